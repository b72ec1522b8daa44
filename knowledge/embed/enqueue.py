"""Start embedding soon after new text is committed, without flooding the queue."""

import threading
import time

from django.conf import settings
from django.db import transaction

_DEBOUNCE_SECONDS = 2.0
_last_enqueued = 0.0
_lock = threading.Lock()


def embedding_enqueue() -> None:
    """Queue an embedding run once the current transaction commits (at most one per 2 s per
    process; the processor picks up everything due, so one run covers many ingests).
    KIOKU_EMBED_ON_WRITE=false leaves it to the schedule (tests that drive the processor)."""
    if settings.KIOKU_EMBED_ON_WRITE:
        transaction.on_commit(_enqueue_now)


def _enqueue_now() -> None:
    global _last_enqueued
    with _lock:
        now = time.monotonic()
        if now - _last_enqueued < _DEBOUNCE_SECONDS:
            return
        _last_enqueued = now
    from django_q.tasks import async_task

    async_task("knowledge.tasks.embedding_run", group="embedding")
