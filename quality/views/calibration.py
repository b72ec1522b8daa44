"""The threshold calibration page: per threshold and embedding model (and brand), the similarity
distribution of good and bad outcomes, the suggested threshold, one click to apply it (or to go
back to the default), and the history of every change."""

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core.errors import ApiError, ErrorCode
from core.models import ThresholdKind, ThresholdSetting
from core.pages import permission_required
from quality.calibration import (
    calibration_read,
    threshold_default_reset,
    threshold_suggestion_apply,
)
from quality.charts import calibration_chart

HISTORY_SHOWN = 50

KIND_TEXT = {
    ThresholdKind.ASK_SIMILARITY: (
        "Ask: passage relevance",
        "The best vector similarity of each answer's passages, for answers marked helpful"
        " (positive) or not helpful (negative); a refusal marked helpful counts as negative.",
    ),
    ThresholdKind.CASE_SIMILARITY: (
        "Diagnosis layer 1: similar resolved case",
        "The best case similarity of each diagnosis: positive when the card was then resolved"
        " (order completed), negative when it escalated, escalated later, or its order was"
        " cancelled.",
    ),
}


class ThresholdChangeForm(forms.Form):
    action = forms.ChoiceField(choices=[("apply", "apply"), ("reset", "reset")])
    kind = forms.ChoiceField(choices=ThresholdKind.choices)
    embedding_model = forms.CharField(max_length=100)
    brand_key = forms.CharField(max_length=100, required=False)
    value = forms.FloatField(required=False, min_value=-1, max_value=1)


def _sections() -> list[dict]:
    sections = []
    for kind in ThresholdKind.values:
        calibration = calibration_read(kind=kind)
        title, explanation = KIND_TEXT[kind]
        groups = [
            {
                "group": group,
                "chart": calibration_chart(group, chart_id=f"{kind}-{number}"),
            }
            for number, group in enumerate(calibration.groups, 1)
        ]
        sections.append(
            {
                "kind": kind,
                "title": title,
                "explanation": explanation,
                "groups": groups,
                "left_out": sorted(calibration.left_out.items()),
                "active_model": calibration.active_model,
            }
        )
    return sections


def _page(
    request: HttpRequest, *, error: ApiError | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "sections": _sections(),
        "history": ThresholdSetting.objects.all()[:HISTORY_SHOWN],
        "error": error,
    }
    return render(request, "quality/calibration.html", context, status=status)


@require_GET
@permission_required("core.view_thresholdsetting")
def calibration(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@permission_required("core.add_thresholdsetting")
def calibration_change(request: HttpRequest) -> HttpResponse:
    """Apply a group's suggestion, or go back to its default."""
    form = ThresholdChangeForm(request.POST)
    if not form.is_valid():
        error = ApiError(
            ErrorCode.VALIDATION_ERROR,
            "The form was not valid.",
            details=form.errors.get_json_data(),
        )
        return _page(request, error=error, status=422)
    data = form.cleaned_data
    where = {
        "kind": data["kind"],
        "model": data["embedding_model"],
        "brand_key": data["brand_key"],
        "by": request.user.get_username(),
    }
    try:
        if data["action"] == "apply":
            if data["value"] is None:
                raise ApiError(
                    ErrorCode.VALIDATION_ERROR, "Which suggestion? The value is missing."
                )
            setting = threshold_suggestion_apply(**where, shown_value=data["value"])
            messages.success(request, f"Threshold {setting.value:.3f} applied: {setting}.")
        else:
            reset = threshold_default_reset(**where)
            messages.success(
                request,
                "Back to the default threshold." if reset else "The default was already in force.",
            )
    except ApiError as exc:
        return _page(request, error=exc, status=exc.status)
    return redirect("quality:calibration")
