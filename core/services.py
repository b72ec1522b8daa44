from collections.abc import Iterable

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


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    api_key = ApiKey.objects.active().filter(key_hash=hash_api_key(raw_key)).first()
    if api_key is not None:
        now = timezone.now()
        # Touch at most once a minute: authentication is on every request's hot path.
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
