from collections.abc import Iterable

from django.conf import settings
from django.core.cache import caches
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


# Authentication runs on every API request; keeping the key in the `default` cache for
# KIOKU_API_KEY_CACHE_SECONDS saves its query (a third of a one-message append). Without Redis
# that cache is per process: a key revoked or deleted in another process stops working within
# that time, in this process at once. With Redis (REDIS_URL) every process shares it, and a
# revocation anywhere reaches all of them at once.
def _key_cache_name(key_hash: str) -> str:
    return f"api-key:{key_hash}"


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    key_hash = hash_api_key(raw_key)
    ttl = settings.KIOKU_API_KEY_CACHE_SECONDS
    cache = caches["default"]
    api_key = cache.get(_key_cache_name(key_hash)) if ttl > 0 else None
    if api_key is None:
        api_key = ApiKey.objects.active().filter(key_hash=key_hash).first()
        if api_key is not None and ttl > 0:
            cache.set(_key_cache_name(key_hash), api_key, timeout=ttl)
    if api_key is not None:
        now = timezone.now()
        # Touch at most once a minute: authentication is on every request's hot path.
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
            if ttl > 0:  # the cached copy too, or every request would touch it again
                cache.set(_key_cache_name(key_hash), api_key, timeout=ttl)
    return api_key


def api_key_cache_forget(*, key_hash: str) -> None:
    """A changed, revoked or deleted key is read again on its next use."""
    caches["default"].delete(_key_cache_name(key_hash))


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key_cache_forget(key_hash=api_key.key_hash)
