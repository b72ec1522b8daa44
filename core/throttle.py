"""API throttling per key, at KIOKU_API_RATE, keyed by the API key (never by an address a
client can spoof with X-Forwarded-For). Over the rate: 429 RATE_LIMITED with Retry-After (ninja
sets the header; config/api.py gives the error shape).

How requests are counted: a sliding window estimated from two fixed windows of the rate's
period, the way large API gateways count. The estimate is the current window's hits plus the
previous window's, weighted by the share of it still inside the last period. So a request
costs one atomic increment and one read. Before, it cost a list of up to KIOKU_API_RATE
timestamps read, unpickled, pickled and written back, in six statements, on every request
(bench/sessions.py); that list also lived on the one throttle instance every thread shares.
Refused requests count too: a client that keeps sending stays refused until it slows down.

Where the counts live: where the `shared` cache lives, so all web processes add to one count per
key. On PostgreSQL (no REDIS_URL) that is the unlogged table `core_apiratewindow`, written by one
statement (a crash empties it, which a throttle tolerates; no WAL is written for it). Expired
windows are pruned by the maintenance schedule. With Redis, it is INCR on the shared cache.
"""

import threading
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connection
from django.http import HttpRequest
from ninja.throttling import BaseThrottle, SimpleRateThrottle

from core.models import ApiRateWindow

TABLE = ApiRateWindow._meta.db_table
_HIT_SQL = (
    f"INSERT INTO {TABLE} AS w (bucket, window_start, expires_at, hits) VALUES (%s, %s, %s, 1) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = w.hits + 1 "
    f"RETURNING w.hits, (SELECT p.hits FROM {TABLE} p WHERE p.bucket = %s AND p.window_start = %s)"
)


def rate_parse(rate: str) -> tuple[int, int]:
    """(requests, period in seconds) of a rate such as "600/min" (ninja's format)."""
    throttle = SimpleRateThrottle(rate)  # parses the rate it is given; nothing else
    return throttle.num_requests, throttle.duration


def window_hits(bucket: str, *, window_start: int, period: int) -> tuple[int, int]:
    """Count one request in the window starting at `window_start`; (its hits now, the previous
    window's hits)."""
    shared = caches["shared"]
    if not isinstance(shared, DatabaseCache):
        key = f"rate:{bucket}:{window_start}"
        # add() then incr(): atomic on Redis (SET NX, INCRBY); the window outlives its period
        # by one more, while it is the previous window.
        shared.add(key, 0, timeout=2 * period)
        try:
            current = shared.incr(key)
        except ValueError:  # expired between the two calls: this request opens it again
            shared.add(key, 1, timeout=2 * period)
            current = 1
        previous = shared.get(f"rate:{bucket}:{window_start - period}", 0)
        return current, previous
    params = [bucket, window_start, window_start + 2 * period, bucket, window_start - period]
    with connection.cursor() as cursor:
        cursor.execute(_HIT_SQL, params)
        current, previous = cursor.fetchone()
    return current, previous or 0


def rate_windows_prune(*, now: float | None = None) -> int:
    """Delete the windows nothing reads any more (run by the maintenance schedule)."""
    return ApiRateWindow.objects.filter(expires_at__lt=int(now or time.time())).delete()[0]


def retry_after(*, allowed: int, period: int, current: int, previous: int, elapsed: float) -> float:
    """Seconds until one more request fits under the estimate `previous × (1 − elapsed/period) +
    current` (`elapsed`: seconds into the current window)."""
    room = allowed - 1  # the estimate must come down to this for a request to be let through
    if current <= room:
        # The previous window's share must shrink: wait until it has slid out far enough.
        needed = 1 - (room - current) / previous if previous else 0.0
        return max(0.0, needed * period - elapsed)
    # The current window alone is full: the next window, until this one has slid out enough.
    return (period - elapsed) + period * (1 - room / current)


class ApiKeyRateThrottle(BaseThrottle):
    # One instance serves every thread: the wait of a refusal is kept per thread.
    _local = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        # Throttles run after authentication: every request that gets here carries a key.
        api_key = getattr(request, "auth", None)
        if api_key is None:
            return True
        allowed, period = rate_parse(settings.KIOKU_API_RATE)
        now = time.time()
        window_start = int(now // period) * period
        # The key's hash, not its id (an id comes back after a test database's flush); the
        # period too, so a changed rate starts its own count.
        bucket = f"{api_key.key_hash[:32]}:{period}"
        current, previous = window_hits(bucket, window_start=window_start, period=period)
        elapsed = now - window_start
        estimate = previous * (1 - elapsed / period) + current
        if estimate <= allowed:
            return True
        self._local.wait = retry_after(
            allowed=allowed, period=period, current=current, previous=previous, elapsed=elapsed
        )
        return False

    def wait(self) -> float:
        return round(max(0.001, getattr(self._local, "wait", 1.0)), 3)
