"""Run a read query on a second database connection while the calling thread runs another.

Hybrid search sends its keyword query here so that it runs while the calling thread embeds the
question and runs the vector query. Each worker thread has its own Django connection, handled
as a request's: a pooled connection (KIOKU_DB_POOL) goes back to the pool after each query. A
persistent one is checked (`close_old_connections()`: CONN_MAX_AGE, errors, and the health
check's ping on next use) at most every CHECK_SECONDS and after a failed query, not before each
query: the ping is a round trip on the slower leg of every hybrid search (p95 −0.4 to −1.4 ms
measured without it, BENCHMARKS.md).

Not used inside a transaction (the second connection would not see the caller's uncommitted
rows) or when KIOKU_SEARCH_SIDE_WORKERS is 0. The query runs in the caller's context (its
read rules, core/replicas.py): a search on a replica reads its keyword leg there too.
"""

import atexit
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, connections

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def available() -> bool:
    return settings.KIOKU_SEARCH_SIDE_WORKERS > 0 and not connection.in_atomic_block


def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.KIOKU_SEARCH_SIDE_WORKERS, thread_name_prefix="kioku-side"
            )
    return _executor.submit(contextvars.copy_context().run, _run, fn, args, kwargs)


CHECK_SECONDS = 5.0  # how often a worker's persistent connection is checked at most
_worker = threading.local()


def _run(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    now = time.monotonic()
    if now - getattr(_worker, "checked_at", -CHECK_SECONDS) >= CHECK_SECONDS:
        close_old_connections()
        _worker.checked_at = now
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        _worker.checked_at = -CHECK_SECONDS  # the next query checks its connection first
        close_old_connections()
        raise
    if connection.settings_dict["CONN_MAX_AGE"] == 0:  # pooled, or not kept: as a request ends
        close_old_connections()
    return result


def shutdown() -> None:
    """Close the workers' connections and stop them (tests call it before the test database is
    dropped; at interpreter exit it runs by itself)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is None:
        return
    # Every worker closes its own connection: the barrier makes each take one task.
    workers = executor._max_workers
    barrier = threading.Barrier(workers)

    def close_own() -> None:
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        connections.close_all()

    try:
        for _ in range(workers):
            executor.submit(close_own)
    except RuntimeError:
        pass  # interpreter exit: the workers are already stopped, their sockets close with them
    executor.shutdown(wait=True)


atexit.register(shutdown)
