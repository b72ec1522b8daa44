"""The retrieval test page: one query against up to four search settings side by side, drawn
as the search page draws hits (scores per leg), the settings kept per user, the history of past
tests (page and API), and "add as eval case" on every hit.

The form only turns text into values; quality.retrieval checks and runs them.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import ApiError
from core.pages import permission_required, wants_fragment
from core.pagination import BIGINT_MAX
from knowledge.models import SourceType
from knowledge.search.base import MODES, SearchHit, SearchResult
from knowledge.views.search import SEARCH_LANGUAGES, SEARCH_MODE_HINTS, search_hit_rows
from quality.models import EvalSet, RetrievalTest
from quality.retrieval import (
    RETRIEVAL_HISTORY_SIZE,
    RETRIEVAL_MAX_TOP_K,
    RETRIEVAL_MAX_VARIANTS,
    retrieval_hit_case_add,
    retrieval_preference_get,
    retrieval_preference_save,
    retrieval_test_find,
    retrieval_test_list,
    retrieval_test_run,
    search_options_available,
)

# A ticked box departs from the search's default: reranked (when a reranker is configured), or
# ranked without outcome feedback. An unticked box leaves the option out of the variant.
OPTION_LABELS = {"rerank": "Rerank", "use_feedback": "Without feedback"}
OPTION_WHEN_TICKED = {"rerank": True, "use_feedback": False}


def page_options() -> tuple[str, ...]:
    return tuple(
        option
        for option in search_options_available()
        if option != "rerank" or settings.KIOKU_RERANKER
    )


class RetrievalTestForm(forms.Form):
    """The query, one row per variant (a blank mode leaves the row out), top_k and the search
    page's filters (source types, language)."""

    # Not bounded here: the search service owns the query's rules (SEARCH_QUERY_TOO_LONG).
    q = forms.CharField(label="Query", required=False, strip=False)
    top_k = forms.IntegerField(
        label="Results",
        min_value=1,
        max_value=RETRIEVAL_MAX_TOP_K,
        widget=forms.NumberInput(attrs={"min": 1, "max": RETRIEVAL_MAX_TOP_K}),
    )
    type = forms.MultipleChoiceField(
        label="Source type",
        choices=SourceType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    language = forms.ChoiceField(
        label="Language",
        choices=[
            ("", "Any"),
            *((value, f"{label} ({value})") for value, label in SEARCH_LANGUAGES),
        ],
        required=False,
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.options = page_options()
        for index in range(RETRIEVAL_MAX_VARIANTS):
            modes = [(mode, mode) for mode in sorted(MODES, key=lambda mode: mode != "hybrid")]
            self.fields[f"mode_{index}"] = forms.ChoiceField(
                label=f"Column {index + 1}", choices=[("", "—"), *modes], required=False
            )
            self.fields[f"min_similarity_{index}"] = forms.FloatField(
                label="Min. similarity",
                required=False,
                widget=forms.NumberInput(
                    attrs={"min": -1, "max": 1, "step": "0.01", "placeholder": "none"}
                ),
            )
            for option in self.options:
                self.fields[f"{option}_{index}"] = forms.BooleanField(
                    label=OPTION_LABELS[option], required=False
                )

    @classmethod
    def initial_from(cls, *, query: str, config: dict) -> dict:
        """Form values for a stored config (a user's settings or a past test)."""
        initial: dict = {"q": query, "top_k": config.get("top_k")}
        for index, variant in enumerate(config.get("variants", [])[:RETRIEVAL_MAX_VARIANTS]):
            initial[f"mode_{index}"] = variant.get("mode")
            initial[f"min_similarity_{index}"] = variant.get("min_similarity")
            for option, ticked in OPTION_WHEN_TICKED.items():
                initial[f"{option}_{index}"] = variant.get(option) is ticked
        filters = config.get("filters", {})
        types = filters.get("source_type") or filters.get("source_types") or []
        initial["type"] = types if isinstance(types, list) else [types]
        metadata = filters.get("metadata")
        initial["language"] = metadata.get("language", "") if isinstance(metadata, dict) else ""
        return initial

    def variant_rows(self) -> list[dict]:
        return [
            {
                "mode": self[f"mode_{index}"],
                "min_similarity": self[f"min_similarity_{index}"],
                "options": [self[f"{option}_{index}"] for option in self.options],
            }
            for index in range(RETRIEVAL_MAX_VARIANTS)
        ]

    def settings(self) -> dict:
        """{variants, top_k, filters} as quality.retrieval takes them."""
        data = self.cleaned_data
        variants = []
        for index in range(RETRIEVAL_MAX_VARIANTS):
            if not data.get(f"mode_{index}"):
                continue
            variant = {
                "mode": data[f"mode_{index}"],
                "min_similarity": data.get(f"min_similarity_{index}"),
            }
            for option in self.options:
                if data.get(f"{option}_{index}"):
                    variant[option] = OPTION_WHEN_TICKED[option]
            variants.append(variant)
        filters: dict = {"source_type": data.get("type") or []}
        if data.get("language"):
            filters["metadata"] = {"language": data["language"]}
        # No row chosen: an empty list, which the service refuses with its own message.
        return {"variants": variants, "top_k": data["top_k"], "filters": filters}


class AddCaseForm(forms.Form):
    test = forms.IntegerField(min_value=1, max_value=BIGINT_MAX)
    chunk = forms.IntegerField(min_value=1, max_value=BIGINT_MAX)
    eval_set = forms.IntegerField(required=False, min_value=1, max_value=BIGINT_MAX)
    new_set = forms.CharField(required=False, max_length=100)
    grade = forms.TypedChoiceField(choices=[(3, "3"), (2, "2"), (1, "1")], coerce=int)

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("eval_set") and not (cleaned.get("new_set") or "").strip():
            raise forms.ValidationError("Choose an evaluation set or name a new one.")
        return cleaned


def column_views(test: RetrievalTest) -> list[dict]:
    """Each stored column as the search page's partial draws a result: a SearchResult of the kept
    hits (the chunk text itself is not kept) and its rows, or the column's error."""
    views = []
    for column in test.results.get("columns", []):
        result = None
        rows: list[dict] = []
        if column.get("error") is None:
            result = SearchResult(
                query=test.query,
                mode=column["variant"]["mode"],
                top_k=test.config.get("top_k", 0),
                hits=[SearchHit(content="", **hit) for hit in column["hits"]],
                model=column["model"],
                offline=column["offline"],
                took_ms=column["took_ms"],
                degraded=column["degraded"],
                degraded_reason=column["degraded_reason"],
            )
            rows = search_hit_rows(result)
        views.append(
            {"label": column["label"], "result": result, "rows": rows, "error": column["error"]}
        )
    return views


def _history() -> QuerySet[RetrievalTest]:
    return retrieval_test_list()[:RETRIEVAL_HISTORY_SIZE]


def _context(request: HttpRequest, *, form: RetrievalTestForm, test: RetrievalTest | None) -> dict:
    return {
        "form": form,
        "test": test,
        "columns": column_views(test) if test else [],
        "history": _history(),
        "eval_sets": EvalSet.objects.all() if request.user.has_perm("quality.add_evalcase") else [],
        "mode_hints": SEARCH_MODE_HINTS,
        "error": None,
    }


def _page(request: HttpRequest, context: dict, *, status: int = 200) -> HttpResponse:
    if wants_fragment(request):
        # HTMX swaps only 2xx answers by default: the error is part of the fragment.
        return render(request, "quality/_retrieval_results.html", context)
    return render(request, "quality/retrieval.html", context, status=status)


@require_GET
@permission_required("quality.view_retrievaltest")
def retrieval_test_page(request: HttpRequest) -> HttpResponse:
    """The form with the user's last settings, or a past test (`?test=<id>`) with its query and
    settings in the form and its columns below."""
    test = None
    status = 200
    error = None
    test_id = request.GET.get("test", "")
    if test_id:
        try:
            test = retrieval_test_find(test_id=int(test_id) if test_id.isdigit() else 0)
        except ApiError as exc:
            error, status = exc, exc.status
    if test is not None:
        initial = RetrievalTestForm.initial_from(query=test.query, config=test.config)
    else:
        initial = RetrievalTestForm.initial_from(
            query="", config=retrieval_preference_get(user=request.user)
        )
    context = _context(request, form=RetrievalTestForm(initial=initial), test=test)
    context["error"] = error
    return render(request, "quality/retrieval.html", context, status=status)


@require_POST
@permission_required("quality.add_retrievaltest")
def retrieval_test_create(request: HttpRequest) -> HttpResponse:
    """Run the form's query under its settings; the settings become the user's. A plain POST is
    redirected to the stored test; HTMX gets the columns and the new URL."""
    form = RetrievalTestForm(request.POST)
    if not form.is_valid():
        context = _context(request, form=form, test=None)
        return _page(request, context, status=422)
    settings = form.settings()
    try:
        retrieval_preference_save(user=request.user, **settings)
        test = retrieval_test_run(
            query=form.cleaned_data["q"], channel="web", user=request.user, **settings
        )
    except ApiError as exc:
        context = _context(request, form=form, test=None)
        context["error"] = exc
        return _page(request, context, status=exc.status)
    url = f"{reverse('quality:retrieval-test')}?test={test.pk}"
    if not wants_fragment(request):
        return redirect(url)
    response = render(
        request, "quality/_retrieval_results.html", _context(request, form=form, test=test)
    )
    response["HX-Push-Url"] = url
    return response


@require_POST
@permission_required("quality.add_evalcase")
def retrieval_case_add(request: HttpRequest) -> HttpResponse:
    """A hit of a past test as an evaluation case: the test's query, expecting that hit's chunk
    with the chosen grade, in an existing set or a new one."""
    form = AddCaseForm(request.POST)
    context: dict = {"form": form, "error": None, "case": None}
    if not form.is_valid():
        context["error"] = " ".join(
            message for messages_ in form.errors.values() for message in messages_
        )
    else:
        data = form.cleaned_data
        try:
            test = retrieval_test_find(test_id=data["test"])
            eval_set = (
                data["new_set"]
                if (data.get("new_set") or "").strip()
                else EvalSet.objects.filter(pk=data["eval_set"]).first()
            )
            if eval_set is None:
                context["error"] = "That evaluation set no longer exists."
            else:
                case, created = retrieval_hit_case_add(
                    test=test,
                    chunk_id=data["chunk"],
                    eval_set=eval_set,
                    grade=data["grade"],
                    created_by=request.user.get_username(),
                )
                context.update(case=case, created=created, eval_set=case.eval_set)
        except ApiError as exc:
            context["error"] = f"{exc.message} ({exc.code})"
    if wants_fragment(request):
        # HTMX swaps only 2xx answers by default: the error is part of the fragment.
        return render(request, "quality/_retrieval_case_added.html", context)
    if context["error"]:
        messages.error(request, context["error"])
    else:
        messages.success(request, f"Added to “{context['eval_set']}” as case {context['case'].pk}.")
    target = reverse("quality:retrieval-test")
    test_id = form.cleaned_data.get("test") if hasattr(form, "cleaned_data") else None
    return redirect(f"{target}?test={test_id}" if test_id else target)
