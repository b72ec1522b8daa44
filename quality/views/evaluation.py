"""The evaluation pages: sets and their cases, runs with their metrics, runs side by side, and the
one-click ways in (a not-helpful answer, a content gap, a resolved card).

Every action is a plain form POST that redirects (works without JavaScript); a run in progress
refreshes itself through htmx polling.
"""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from core.errors import ApiError
from core.pages import permission_required, wants_fragment
from knowledge.models import Answer, KnowledgeSource
from quality import queries
from quality.models import EvalCase, EvalRun, EvalSet
from quality.runs import eval_run_queue, run_modes
from quality.services import (
    eval_case_activate,
    eval_case_create,
    eval_case_delete,
    eval_case_from_answer,
    eval_case_from_card,
    eval_case_from_gap,
    eval_case_unexpect,
    eval_expected_add,
    eval_set_create,
    eval_set_ensure,
    eval_set_export_jsonl,
    eval_set_import_jsonl,
)

IMPORT_MAX_BYTES = 5 * 1024 * 1024


def _who(request: HttpRequest) -> str:
    return request.user.get_username()


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Back to the page the one-click form was on (same host only), else `fallback`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def _error(request: HttpRequest, exc: ApiError) -> None:
    messages.error(request, f"{exc.message} ({exc.code})")


@require_GET
@permission_required("quality.view_evalrun")
def evaluation_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "quality/evaluation.html",
        {
            "sets": queries.eval_sets_with_latest(),
            "runs": queries.eval_runs_recent(limit=30),
            "trend": queries.eval_run_trend(limit=30),
        },
    )


@require_POST
@permission_required("quality.add_evalset")
def set_create(request: HttpRequest) -> HttpResponse:
    try:
        eval_set = eval_set_create(
            name=request.POST.get("name", ""), description=request.POST.get("description", "")
        )
    except ApiError as exc:
        _error(request, exc)
        return redirect("quality:evaluation")
    return redirect("quality:set-detail", set_id=eval_set.pk)


@require_GET
@permission_required("quality.view_evalcase")
def set_detail(request: HttpRequest, set_id: int) -> HttpResponse:
    eval_set = get_object_or_404(EvalSet, pk=set_id)
    page = Paginator(queries.eval_cases_of(eval_set), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "quality/set_detail.html",
        {
            "eval_set": eval_set,
            "page": page,
            "sources": KnowledgeSource.objects.order_by("title").only("id", "title"),
            "runs": eval_set.runs.all()[:10],
            "reranker": settings.KIOKU_RERANKER,
        },
    )


@require_POST
@permission_required("quality.add_evalcase")
def case_create(request: HttpRequest, set_id: int) -> HttpResponse:
    eval_set = get_object_or_404(EvalSet, pk=set_id)
    expected = []
    if request.POST.get("source_id", "").isdigit():
        expected.append(
            {
                "source_id": int(request.POST["source_id"]),
                "grade": _grade(request.POST.get("grade")),
            }
        )
    try:
        eval_case_create(
            eval_set=eval_set,
            question=request.POST.get("question", ""),
            expected=expected,
            tags=_words(request.POST.get("tags", "")),
            expected_keywords=_words(request.POST.get("keywords", "")),
            created_by=_who(request),
        )
    except ApiError as exc:
        _error(request, exc)
    else:
        messages.success(request, "Case added.")
    return redirect("quality:set-detail", set_id=set_id)


def _grade(raw: str | None) -> int:
    return int(raw) if raw in ("1", "2", "3") else 1


def _words(raw: str) -> list[str]:
    return [word.strip() for word in raw.split(",") if word.strip()]


@require_POST
@permission_required("quality.change_evalcase")
def case_expect(request: HttpRequest, case_id: int) -> HttpResponse:
    case = get_object_or_404(EvalCase, pk=case_id)
    raw = request.POST.get("source_id", "")
    if not raw.isdigit():
        messages.error(request, "Choose the source the case should find.")
    else:
        try:
            eval_expected_add(
                case=case, source_id=int(raw), grade=_grade(request.POST.get("grade"))
            )
        except ApiError as exc:
            _error(request, exc)
    return redirect("quality:set-detail", set_id=case.eval_set_id)


@require_POST
@permission_required("quality.change_evalcase")
def case_unexpect(request: HttpRequest, case_id: int, expected_id: int) -> HttpResponse:
    case = get_object_or_404(EvalCase, pk=case_id)
    eval_case_unexpect(case=case, expected_id=expected_id)
    return redirect("quality:set-detail", set_id=case.eval_set_id)


@require_POST
@permission_required("quality.change_evalcase")
def case_toggle(request: HttpRequest, case_id: int) -> HttpResponse:
    case = get_object_or_404(EvalCase, pk=case_id)
    eval_case_activate(case=case, is_active=not case.is_active)
    return redirect("quality:set-detail", set_id=case.eval_set_id)


@require_POST
@permission_required("quality.delete_evalcase")
def case_delete(request: HttpRequest, case_id: int) -> HttpResponse:
    case = get_object_or_404(EvalCase, pk=case_id)
    set_id = case.eval_set_id
    eval_case_delete(case=case)
    messages.success(request, "Case deleted.")
    return redirect("quality:set-detail", set_id=set_id)


def _target_set(request: HttpRequest) -> EvalSet:
    return eval_set_ensure(name=request.POST.get("set_name") or queries.default_set_name())


@require_POST
@permission_required("quality.add_evalcase")
def case_from_answer(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = get_object_or_404(Answer, pk=answer_id)
    try:
        case = eval_case_from_answer(
            answer=answer, eval_set=_target_set(request), created_by=_who(request)
        )
    except ApiError as exc:
        _error(request, exc)
    else:
        messages.success(
            request,
            f"Added to the evaluation set “{case.eval_set.name}” as a draft: add the passages it "
            "should find to activate it.",
        )
    return _back(request, reverse("knowledge:answer-queue"))


@require_POST
@permission_required("quality.add_evalcase")
def case_from_gap(request: HttpRequest) -> HttpResponse:
    try:
        case = eval_case_from_gap(
            question=request.POST.get("question", ""),
            eval_set=_target_set(request),
            created_by=_who(request),
        )
    except ApiError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"Added to the evaluation set “{case.eval_set.name}”.")
    return _back(request, reverse("knowledge:content-gaps"))


@require_POST
@permission_required("quality.add_evalcase")
def case_from_card(request: HttpRequest, card_id: int) -> HttpResponse:
    try:
        case = eval_case_from_card(
            card_id=card_id, eval_set=_target_set(request), created_by=_who(request)
        )
    except ApiError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"Added to the evaluation set “{case.eval_set.name}”.")
    return _back(request, reverse("dispatch:case-detail", args=[card_id]))


@require_POST
@permission_required("quality.add_evalcase")
def set_import(request: HttpRequest, set_id: int) -> HttpResponse:
    eval_set = get_object_or_404(EvalSet, pk=set_id)
    upload = request.FILES.get("file")
    if upload is None or upload.size > IMPORT_MAX_BYTES:
        messages.error(request, "Choose a JSONL file of at most 5 MB.")
        return redirect("quality:set-detail", set_id=set_id)
    try:
        text = upload.read().decode("utf-8")
        result = eval_set_import_jsonl(
            eval_set=eval_set, lines=text.splitlines(), created_by=_who(request)
        )
    except UnicodeDecodeError:
        messages.error(request, "The file is not UTF-8 text.")
    except ApiError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"Imported {result.created} case(s).")
    return redirect("quality:set-detail", set_id=set_id)


@require_GET
@permission_required("quality.view_evalcase")
def set_export(request: HttpRequest, set_id: int) -> HttpResponse:
    eval_set = get_object_or_404(EvalSet, pk=set_id)
    response = HttpResponse(
        "".join(eval_set_export_jsonl(eval_set=eval_set)),
        content_type="application/jsonl; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="eval-set-{eval_set.pk}.jsonl"'
    return response


@require_POST
@permission_required("quality.add_evalrun")
def run_create(request: HttpRequest, set_id: int) -> HttpResponse:
    eval_set = get_object_or_404(EvalSet, pk=set_id)
    try:
        run = eval_run_queue(
            eval_set=eval_set,
            modes=run_modes(request.POST.get("mode", "all")),
            use_reranker=request.POST.get("rerank") == "on",
            use_feedback=request.POST.get("no_feedback") != "on",
            check_answers=request.POST.get("no_answers") != "on",
            triggered_by=_who(request),
        )
    except ApiError as exc:
        _error(request, exc)
        return redirect("quality:set-detail", set_id=set_id)
    return redirect("quality:run-detail", run_id=run.pk)


@require_GET
@permission_required("quality.view_evalrun")
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(EvalRun.objects.select_related("eval_set"), pk=run_id)
    context = {
        "run": run,
        "tables": queries.run_tables(run),
        "results": queries.run_results(run),
        "previous": queries.run_previous(run),
    }
    if wants_fragment(request):
        return render(request, "quality/_run_status.html", context)
    return render(request, "quality/run_detail.html", context)


@require_GET
@permission_required("quality.view_evalrun")
def run_compare(request: HttpRequest) -> HttpResponse:
    first = get_object_or_404(EvalRun, pk=_int(request.GET.get("a")))
    second = get_object_or_404(EvalRun, pk=_int(request.GET.get("b")))
    return render(
        request,
        "quality/run_compare.html",
        {"first": first, "second": second, "rows": queries.runs_compare(first, second)},
    )


def _int(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) < 19 else 0
