"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from django.conf import settings

from quality import runs


def eval_run_execute(run_id: int) -> dict:
    runs.index_settled_wait(max_seconds=settings.KIOKU_EVAL_WAIT_FOR_INDEX_SECONDS)
    run = runs.eval_run_execute(run_id=run_id)
    return {"run": run.pk, "status": run.status, "results": run.done_count}


def eval_runs_scheduled() -> list[int]:
    """The schedule: one run of every set marked for it, in every mode, answers checked."""
    return [run.pk for run in runs.eval_runs_queue_scheduled()]
