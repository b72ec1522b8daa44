import hashlib
import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models


class ApiScope(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"
    ADMIN = "admin", "admin"


# A scope grants itself and every scope listed after it.
SCOPE_IMPLIES = {
    ApiScope.READ: {ApiScope.READ},
    ApiScope.WRITE: {ApiScope.WRITE, ApiScope.READ},
    ApiScope.ADMIN: {ApiScope.ADMIN, ApiScope.WRITE, ApiScope.READ},
}
KEY_PREFIX = "kioku_"


def hash_api_key(raw_key: str) -> str:
    # Keys are 32 random bytes, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_raw_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(
        max_length=16, help_text="First characters of the key, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = ArrayField(models.CharField(max_length=10, choices=ApiScope.choices), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scopes__contained_by=list(ApiScope.values))
                & ~models.Q(scopes=[]),
                name="apikey_scopes_known_and_not_empty",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        granted: set[str] = set()
        for held in self.scopes:
            granted |= SCOPE_IMPLIES.get(held, set())
        return scope in granted
