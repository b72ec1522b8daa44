"""Reads for the evaluation pages, the admin and the API."""

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet

from quality.models import EvalCase, EvalExpected, EvalResult, EvalRun, EvalSet, RunStatus
from quality.report import ANSWER_COLUMNS, SEARCH_COLUMNS, ordered_metrics

HEADLINE_MODE = "hybrid"  # the mode answers use: the one the trend and the set list show


def default_set_name() -> str:
    """The set the one-click buttons (feedback queue, content gaps, cards) add to."""
    return settings.KIOKU_EVAL_DEFAULT_SET


def eval_sets_with_latest() -> list[EvalSet]:
    sets = list(
        EvalSet.objects.annotate(
            case_total=Count("cases", distinct=True),
            active_total=Count("cases", filter=Q(cases__is_active=True), distinct=True),
        ).order_by("name")
    )
    for eval_set in sets:
        eval_set.latest_run = eval_set.runs.filter(status=RunStatus.DONE).first()
        eval_set.running_run = eval_set.runs.filter(
            status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        ).first()
    return sets


def eval_runs_recent(*, limit: int) -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("eval_set").order_by("-created_at", "-id")[:limit]


def headline(run: EvalRun) -> dict:
    """The hybrid (else first) mode's overall means, and the answer checks, of one run."""
    metrics = run.metrics or {}
    mode = (
        HEADLINE_MODE
        if HEADLINE_MODE in metrics
        else next((m for m in metrics if m != "answer"), None)
    )
    return {
        "mode": mode,
        "search": metrics.get(mode, {}).get("all", {}) if mode else {},
        "answers": metrics.get("answer", {}).get("all", {}),
    }


def eval_run_trend(*, limit: int) -> list[dict]:
    """Finished runs, oldest first, with their headline figures and the settings that changed
    since the previous run of the same set (model, reranker, feedback, chunking…)."""
    runs = list(
        EvalRun.objects.filter(status=RunStatus.DONE)
        .select_related("eval_set")
        .order_by("-finished_at", "-id")[:limit]
    )
    runs.reverse()
    previous_config: dict[int, dict] = {}
    trend = []
    for run in runs:
        before = previous_config.get(run.eval_set_id)
        changed = (
            sorted(k for k in run.config if before is not None and before.get(k) != run.config[k])
            if before is not None
            else []
        )
        previous_config[run.eval_set_id] = run.config
        trend.append({"run": run, "changed": changed, **headline(run)})
    return trend


def eval_cases_of(eval_set: EvalSet) -> QuerySet[EvalCase]:
    return eval_set.cases.prefetch_related(
        Prefetch("expected", queryset=EvalExpected.objects.order_by("-grade", "id"))
    ).order_by("id")


def run_tables(run: EvalRun) -> list[dict]:
    """The run's metrics as tables: one per mode, one row per language (`all` first)."""
    tables = []
    for mode, groups in ordered_metrics(run.metrics or {}):
        columns = ANSWER_COLUMNS if mode == "answer" else SEARCH_COLUMNS
        tables.append(
            {
                "mode": mode,
                "columns": [label for label, _ in columns],
                "rows": [
                    {
                        "group": group,
                        "cases": values.get("cases", 0),
                        "values": [values.get(key) for _, key in columns],
                    }
                    for group, values in groups
                ],
            }
        )
    return tables


def run_results(run: EvalRun) -> QuerySet[EvalResult]:
    return run.results.select_related("case").order_by("case_id", "mode")


def run_previous(run: EvalRun) -> EvalRun | None:
    """The set's finished run before this one, to compare with."""
    return (
        EvalRun.objects.filter(eval_set_id=run.eval_set_id, status=RunStatus.DONE, id__lt=run.pk)
        .order_by("-id")
        .first()
    )


def runs_compare(first: EvalRun, second: EvalRun) -> list[dict]:
    """Every metric both runs have, side by side with the difference (second − first)."""
    rows = []
    for mode, groups in ordered_metrics(first.metrics or {}):
        other_groups = (second.metrics or {}).get(mode, {})
        columns = ANSWER_COLUMNS if mode == "answer" else SEARCH_COLUMNS
        for group, values in groups:
            other = other_groups.get(group)
            if other is None:
                continue
            for label, key in columns:
                a, b = values.get(key), other.get(key)
                delta = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
                rows.append(
                    {"mode": mode, "group": group, "metric": label, "a": a, "b": b, "delta": delta}
                )
    return rows
