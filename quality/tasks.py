"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from django.conf import settings

from quality import runs
from quality.models import EvalSet


def eval_run_execute(run_id: int) -> dict:
    runs.index_settled_wait(max_seconds=settings.KIOKU_EVAL_WAIT_FOR_INDEX_SECONDS)
    run = runs.eval_run_execute(run_id=run_id)
    return {"run": run.pk, "status": run.status, "results": run.done_count}


def eval_runs_scheduled() -> list[int]:
    """The schedule: one run of every set marked for it, in every mode, answers checked."""
    queued = []
    for eval_set in EvalSet.objects.filter(is_scheduled=True):
        if eval_set.cases.active().exists():
            queued.append(runs.eval_run_queue(eval_set=eval_set, triggered_by="schedule").pk)
    return queued
