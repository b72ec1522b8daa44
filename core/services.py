import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.models import ApiKey, ApiScope, generate_raw_api_key, hash_api_key


class ApiKeyError(ValueError):
    pass


@transaction.atomic
def api_key_create(*, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is shown once and never stored."""
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(ApiScope.values)
    if not name.strip():
        raise ApiKeyError("An API key needs a name.")
    if not scopes:
        raise ApiKeyError("An API key needs at least one scope (read, write, admin).")
    if unknown:
        raise ApiKeyError(
            f"Unknown scope(s): {', '.join(sorted(unknown))}. Use read, write, admin."
        )
    if ApiKey.objects.filter(name=name).exists():
        raise ApiKeyError(f"An API key named {name!r} already exists.")
    raw_key = generate_raw_api_key()
    api_key = ApiKey.objects.create(
        name=name, prefix=raw_key[:12], key_hash=hash_api_key(raw_key), scopes=scopes
    )
    return api_key, raw_key


# key hash → (key, monotonic time it was read). Authentication runs on every API request; the
# cache saves its query (a third of a one-message append). A key revoked or deleted in another
# process stops working within KIOKU_API_KEY_CACHE_SECONDS; in this process at once.
_key_cache: dict[str, tuple[ApiKey, float]] = {}
_key_cache_lock = threading.Lock()


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    key_hash = hash_api_key(raw_key)
    ttl = settings.KIOKU_API_KEY_CACHE_SECONDS
    cached = _key_cache.get(key_hash)
    if cached is not None and time.monotonic() - cached[1] < ttl:
        api_key = cached[0]
    else:
        api_key = ApiKey.objects.active().filter(key_hash=key_hash).first()
        with _key_cache_lock:
            if api_key is None or ttl <= 0:
                _key_cache.pop(key_hash, None)
            else:
                _key_cache[key_hash] = (api_key, time.monotonic())
    if api_key is not None:
        now = timezone.now()
        # Touch at most once a minute: authentication is on every request's hot path.
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
    return api_key


def api_key_cache_clear() -> None:
    with _key_cache_lock:
        _key_cache.clear()


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key_cache_clear()
