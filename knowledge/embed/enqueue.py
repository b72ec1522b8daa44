"""Start embedding soon after new text is committed, without flooding the queue."""

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

# In the shared cache (one for every process) while a run is queued and has not started yet.
RUN_QUEUED_KEY = "knowledge:embedding_run_queued"
# A queued run that never starts (its cluster died) stops holding back new ones after this; the
# every-minute sweeper covers the gap.
RUN_QUEUED_SECONDS = 60


def embedding_enqueue() -> None:
    """Queue an embedding run once the current transaction commits, unless a run is already
    queued and not started: that one will see these rows, so one run covers many ingests.
    KIOKU_EMBED_ON_WRITE=false leaves it to the schedule (tests that drive the processor)."""
    if settings.KIOKU_EMBED_ON_WRITE:
        transaction.on_commit(_enqueue_now)


def embedding_run_started() -> None:
    """A run calls this before it claims its first row: text committed from now on may come too
    late for it, so the next commit queues a run of its own."""
    caches["shared"].delete(RUN_QUEUED_KEY)


def _enqueue_now() -> None:
    # `add` sets the flag only if it is not set: of many commits at once, one queues the run.
    # Before, a time window (one run per 2 s per process) dropped the commits that came after
    # the queued run had claimed its rows: their text waited up to a minute for the sweeper.
    if not caches["shared"].add(RUN_QUEUED_KEY, True, timeout=RUN_QUEUED_SECONDS):
        return
    from django_q.tasks import async_task

    async_task("knowledge.tasks.embedding_run", group="embedding")
