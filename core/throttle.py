"""API throttling per key: django-ninja's SimpleRateThrottle, keyed by the API key (never by an
address a client can spoof with X-Forwarded-For), at KIOKU_API_RATE. Over the rate: 429
RATE_LIMITED with Retry-After (ninja sets the header; config/api.py gives the error shape).

The counts live in the `shared` cache (a PostgreSQL table, or Redis with REDIS_URL), so all web
processes add to one count per key. Two requests of one key at the same instant may both read the same history and one of
them goes uncounted: a throttle's tolerance, not a ledger's."""

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        # The rate is read on every request (settings are read at call time, never at import).
        self.rate = None

    @property
    def cache(self) -> BaseCache:
        # Looked up per request, like the settings: the cache configured now, not at import.
        return caches["shared"]

    def allow_request(self, request: HttpRequest) -> bool:
        self.rate = settings.KIOKU_API_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        # Throttles run after authentication: every request that gets here carries a key.
        api_key = getattr(request, "auth", None)
        if api_key is None:
            return None
        # The key's hash, not its id: an id comes back after a test database's flush.
        return self.cache_format % {"scope": self.scope, "ident": api_key.key_hash[:32]}
