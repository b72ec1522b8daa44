"""Read replicas (DATABASE_REPLICA_URLS): which connection a read uses, each replica's health,
and read-your-writes.

The rule is opt-in. A read goes to a replica only inside `replica_reads` — the decorator on the
read-only request paths (search, ask retrieval, lists, dashboards). Everything else reads the
primary: services that write, the embedding pipeline, the archiver, migrations, management
commands and tasks never enter the scope, so they need no marking and a new code path is safe
by default. Opting out (replicas unless told otherwise) would send every read Kioku adds later
to a replica that may be seconds behind, including reads that decide a write (a get before an
update, a duplicate check); one forgotten marker would be a lost update, where a forgotten
opt-in only costs the primary a read.

Inside the scope a read still goes to the primary when:
- the default connection is in a transaction (`atomic`): a read inside a write must see it;
- the request wrote already (a write through the router or a write statement on the primary);
- the client asked for strong consistency (`?consistency=strong` or `Kioku-Consistency: strong`);
- the client wrote within KIOKU_READ_YOUR_WRITES_SECONDS (the cookie the middleware sets);
- no replica is healthy: each is probed at most every KIOKU_REPLICA_CHECK_SECONDS per process
  and skipped while it is down or lags more than KIOKU_REPLICA_MAX_LAG_SECONDS.

Raw SQL reads take their connection from `read_connection()`; ORM reads go through the router
(core/routers.py), which asks `read_alias()` too.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA_PREFIX = "replica"
CONSISTENCY_PARAM = "consistency"
CONSISTENCY_HEADER = "Kioku-Consistency"
# Unix time until which this client reads the primary (set after it wrote).
READ_PRIMARY_COOKIE = "kioku_read_primary_until"
# Bookkeeping that is always read and written on the primary, whatever the scope: who is logged
# in, API keys, login throttling, the task queue, the shared cache, API throttling counts. A
# session or key created a moment ago must be found, a count must be one count; and since they
# are never read from a replica, writing them does not make a request "a write" for
# read-your-writes (every API request touches its throttle count).
PRIMARY_ONLY_APPS = {
    "auth",
    "sessions",
    "contenttypes",
    "admin",
    "axes",
    "django_q",
    "django_cache",
}
PRIMARY_ONLY_MODELS = {"core.apikey", "core.apiratewindow"}
# A statement that changes data, and (group 1) the table it changes.
_WRITE_TARGET = re.compile(
    r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|TRUNCATE(?:\s+TABLE)?|MERGE\s+INTO)"
    r'\s+(?:ONLY\s+)?"?([\w.]+)"?',
    re.IGNORECASE,
)
_DATA_MODIFYING_CTE = re.compile(r"^\s*WITH\b.*\b(INSERT|UPDATE|DELETE)\b", re.I | re.S)


@dataclass
class ReadState:
    """One request's (or scope's) reading rules; shared by its side threads (parallel_reads)."""

    replicas_allowed: bool = False
    primary_pinned: bool = False
    wrote: bool = False
    replica: str | None = None
    # The view is declared read-only (replica_reads): its method (POST /search) says nothing.
    read_only_view: bool = False


@dataclass
class ReplicaHealth:
    alias: str
    reachable: bool = False
    lag_seconds: float | None = None
    error: str = ""
    checked_at: float = field(default=0.0)

    @property
    def in_use(self) -> bool:
        return (
            self.reachable
            and self.lag_seconds is not None
            and self.lag_seconds <= settings.KIOKU_REPLICA_MAX_LAG_SECONDS
        )


_state: ContextVar[ReadState | None] = ContextVar("kioku_read_state", default=None)
_health: dict[str, ReplicaHealth] = {}
_health_lock = threading.Lock()
_probing: set[str] = set()


def replica_aliases() -> list[str]:
    """The replica aliases in DATABASES (config/settings.py names them replica1, replica2, …)."""
    return [alias for alias in settings.DATABASES if alias.startswith(REPLICA_PREFIX)]


# --- Which connection a read uses ---------------------------------------------------------------


def read_alias() -> str:
    """The alias the next read should use (see the module docstring)."""
    state = _state.get()
    if state is None or not state.replicas_allowed or state.primary_pinned or state.wrote:
        return DEFAULT_DB_ALIAS
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    if state.replica and _usable(state.replica):
        return state.replica
    state.replica = next((alias for alias in replica_aliases() if _usable(alias)), None)
    return state.replica or DEFAULT_DB_ALIAS


def read_connection() -> BaseDatabaseWrapper:
    """The connection for a raw SQL read: a replica inside `replica_reads`, else the primary."""
    return connections[read_alias()]


def is_primary_only(app_label: str, model_name: str) -> bool:
    return app_label in PRIMARY_ONLY_APPS or f"{app_label}.{model_name}" in PRIMARY_ONLY_MODELS


def write_seen() -> None:
    """A write went to the primary: the rest of this request reads the primary, and the client
    does for KIOKU_READ_YOUR_WRITES_SECONDS (the middleware's cookie)."""
    state = _state.get()
    if state is not None:
        state.wrote = True


@contextmanager
def replica_scope() -> Iterator[ReadState]:
    """Let the reads inside use a replica (the request's own rules still apply)."""
    state = _state.get()
    token = None
    if state is None:
        state = ReadState()
        token = _state.set(state)
    previous = state.replicas_allowed
    state.replicas_allowed = state.read_only_view = True
    try:
        yield state
    finally:
        state.replicas_allowed = previous
        if token is not None:
            _state.reset(token)


def replica_reads(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of a read-only page view or API endpoint (under `@router.get(…)`): its reads
    may use a replica. Only for views whose writes, if any, come after their reads (an answer
    stored after its retrieval): a write pins the rest of the request to the primary.

    A replica lost while the view reads (stopped since its last probe, a connection cut) is
    marked down and the view runs again on the primary: the reader sees no error. Running it
    again is safe because nothing was written yet (a write would have pinned the reads to the
    primary, so the failure could not have come from a replica)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not replica_aliases():
            return view(request, *args, **kwargs)
        with replica_scope() as state:
            try:
                return view(request, *args, **kwargs)
            except Exception as exc:
                if not _replica_failed(state, exc):
                    raise
            state.primary_pinned = True
            return view(request, *args, **kwargs)

    return wrapped


def _replica_failed(state: ReadState, exc: Exception) -> bool:
    """Whether `exc` is the replica this scope read from going out of reach."""
    from core.health import database_unreachable

    replica = state.replica
    if replica is None or state.wrote or not database_unreachable(exc):
        return False
    if replica_health(replica, refresh=True).in_use:
        return False  # the replica answers: the primary is the one out of reach
    connections[replica].close()
    return True


# --- Health -----------------------------------------------------------------------------------

# Lag measured on the replica. An idle primary sends nothing to replay, so the last replayed
# transaction grows old although the replica is current: a replica still streaming from the
# primary (its WAL receiver runs) that has replayed everything it received has lag 0. One that
# lost the primary has replayed all it received too, yet falls further behind every second: it
# is measured by its last replayed transaction. A server not in recovery is not a standby
# (promoted, or a wrong URL): never used.
_LAG_SQL = """
    SELECT pg_is_in_recovery(),
        CASE
            WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
        END
"""


def replica_health(alias: str, *, refresh: bool = False) -> ReplicaHealth:
    """The replica's health, probed again when older than KIOKU_REPLICA_CHECK_SECONDS (or
    `refresh`). One thread probes; the others keep the last answer meanwhile."""
    with _health_lock:
        known = _health.get(alias)
        stale = (
            known is None
            or refresh
            or (time.monotonic() - known.checked_at >= settings.KIOKU_REPLICA_CHECK_SECONDS)
        )
        if not stale or (alias in _probing and known is not None):
            return known
        _probing.add(alias)
    try:
        health = _probe(alias)
    finally:
        with _health_lock:
            _probing.discard(alias)
    with _health_lock:
        _health[alias] = health
    return health


def replica_mark_down(alias: str, error: BaseException | str) -> None:
    """A connection error on the replica: skip it until the next probe says otherwise."""
    message = _one_line(error)
    logger.warning("Read replica %s is down, reading the primary: %s", alias, message)
    with _health_lock:
        _health[alias] = ReplicaHealth(alias=alias, error=message, checked_at=time.monotonic())


def replica_health_forget() -> None:
    """Probe every replica again on next use (tests; a changed DATABASES)."""
    with _health_lock:
        _health.clear()


def replicas_report() -> list[dict[str, Any]]:
    """Each replica for /healthz: reachable, lag, whether reads use it."""
    report = []
    for alias in replica_aliases():
        health = replica_health(alias)
        report.append(
            {
                "alias": alias,
                "reachable": health.reachable,
                "lag_seconds": None if health.lag_seconds is None else round(health.lag_seconds, 3),
                "in_use": health.in_use,
                **({"error": health.error} if health.error else {}),
            }
        )
    return report


def _usable(alias: str) -> bool:
    """Healthy by the last probe, and this thread's connection to it opens (a replica stopped
    since the probe is found here, before any query, and the read goes to the primary)."""
    if not replica_health(alias).in_use:
        return False
    replica = connections[alias]
    try:
        replica.ensure_connection()
    except Exception as exc:  # any driver error: the replica is out of reach
        replica.close()
        replica_mark_down(alias, exc)
        return False
    if _mark_down_on_error not in replica.execute_wrappers:
        # First, not last: `execute_wrapper()` blocks pop the last wrapper on the way out.
        replica.execute_wrappers.insert(0, _mark_down_on_error)
    return True


def _probe(alias: str) -> ReplicaHealth:
    replica = connections[alias]
    try:
        with replica.cursor() as cursor:
            cursor.execute(_LAG_SQL)
            in_recovery, lag = cursor.fetchone()
    except Exception as exc:  # any driver error: the replica is out of reach
        replica.close()
        return ReplicaHealth(alias=alias, error=_one_line(exc), checked_at=time.monotonic())
    if not in_recovery:
        return ReplicaHealth(
            alias=alias,
            reachable=True,
            error="not a standby (pg_is_in_recovery() is false): not used",
            checked_at=time.monotonic(),
        )
    return ReplicaHealth(
        alias=alias,
        reachable=True,
        lag_seconds=None if lag is None else max(0.0, float(lag)),
        error="" if lag is not None else "no transaction replayed yet",
        checked_at=time.monotonic(),
    )


def _mark_down_on_error(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    """On a replica's connection: a lost connection marks the replica down at once (this read
    fails with the usual 503; the next ones go to the primary)."""
    from core.health import database_unreachable

    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        if database_unreachable(exc):
            replica_mark_down(context["connection"].alias, exc)
        raise


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())[:300] or error.__class__.__name__


# --- Read-your-writes -------------------------------------------------------------------------


def _watch_writes(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    """On the primary's connection for the request: a statement that changes data is a write
    (raw SQL writes bypass the router), unless it only changes primary-only bookkeeping."""
    target = _WRITE_TARGET.match(sql)
    if target is not None:
        if target.group(1).rsplit(".", 1)[-1] not in _primary_only_tables():
            write_seen()
    elif _DATA_MODIFYING_CTE.match(sql):
        write_seen()
    return execute(sql, params, many, context)


def _primary_only_tables() -> set[str]:
    global _bookkeeping_tables
    if _bookkeeping_tables is None:
        from django.apps import apps

        tables = {
            model._meta.db_table
            for model in apps.get_models(include_auto_created=True)
            if is_primary_only(model._meta.app_label, model._meta.model_name)
        }
        tables |= {
            cache["LOCATION"]
            for cache in settings.CACHES.values()
            if cache["BACKEND"].endswith("DatabaseCache")
        }
        _bookkeeping_tables = tables
    return _bookkeeping_tables


_bookkeeping_tables: set[str] | None = None


def _wants_primary(request: HttpRequest) -> bool:
    asked = request.GET.get(CONSISTENCY_PARAM) or request.headers.get(CONSISTENCY_HEADER) or ""
    if asked.strip().lower() == "strong":
        return True
    try:
        until = float(request.COOKIES.get(READ_PRIMARY_COOKIE, "0"))
    except ValueError:
        return False
    return time.time() < until


class ReadConsistencyMiddleware:
    """Read-your-writes where a user would notice. A request that wrote (an unsafe method that
    succeeded, or a write seen on the primary) sets a cookie: the client's requests read the
    primary for KIOKU_READ_YOUR_WRITES_SECONDS, so a source just added is in the list it returns
    to. API callers, which rarely keep cookies, send `consistency=strong` instead. Without
    replicas it does nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_aliases():
            return self.get_response(request)
        state = ReadState(primary_pinned=_wants_primary(request))
        token = _state.set(state)
        try:
            with connections[DEFAULT_DB_ALIAS].execute_wrapper(_watch_writes):
                response = self.get_response(request)
        finally:
            _state.reset(token)
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
        window = settings.KIOKU_READ_YOUR_WRITES_SECONDS
        succeeded_unsafe = unsafe and response.status_code < 400 and not state.read_only_view
        if window > 0 and (state.wrote or succeeded_unsafe):
            response.set_cookie(
                READ_PRIMARY_COOKIE,
                f"{time.time() + window:.0f}",
                max_age=window,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response
