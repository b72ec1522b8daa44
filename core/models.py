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


class ApiRateWindow(models.Model):
    """Requests of one API key in one fixed window of the rate's period (core/throttle.py).
    Bookkeeping: written with asynchronous commit, pruned once expired."""

    bucket = models.CharField(max_length=80, help_text="The key's hash and the period.")
    window_start = models.BigIntegerField(help_text="Unix time the window starts.")
    expires_at = models.BigIntegerField(help_text="Unix time after which nothing reads it.")
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "window_start"], name="rate_window_once")
        ]
        indexes = [models.Index(fields=["expires_at"], name="rate_window_expiry")]

    def __str__(self) -> str:
        return f"{self.bucket} @ {self.window_start}: {self.hits}"


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


# --- Similarity thresholds ------------------------------------------------------------------------


class ThresholdKind(models.TextChoices):
    ASK_SIMILARITY = "ask_similarity", "Ask: a passage is relevant"
    CASE_SIMILARITY = "case_similarity", "Diagnosis layer 1: a resolved case matches"


class ThresholdSettingQuerySet(models.QuerySet):
    def active(self) -> "ThresholdSettingQuerySet":
        return self.filter(is_active=True)


class ThresholdSetting(models.Model):
    """A similarity threshold set for one embedding model (and, for cases, one brand), instead of
    the default in config/settings.py. Rows are never edited: every change — a value applied, a
    reset to the default — is a new row, and applying one deactivates the one it replaces, so
    the table is the audit log. `core.thresholds.threshold_value` reads the active row.

    A row without a value records a reset to the default (never active)."""

    kind = models.CharField(max_length=20, choices=ThresholdKind.choices)
    embedding_model = models.CharField(max_length=100)
    # The brand's matching key (dispatch.models.normalize_key); blank: every brand.
    brand_key = models.CharField(max_length=100, blank=True)
    value = models.FloatField(null=True, blank=True)
    # The value in force before this row: the replaced row's, or the default.
    previous_value = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    # What the value rests on: the method, the labelled counts, the rates at the cut.
    evidence = models.JSONField(default=dict, blank=True)
    set_by = models.CharField(max_length=150, blank=True, help_text="User name.")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    objects = ThresholdSettingQuerySet.as_manager()

    class Meta:
        verbose_name = "similarity threshold"
        ordering = ["-created_at", "-id"]
        constraints = [
            # The reader relies on it: one value in force per kind, model and brand.
            models.UniqueConstraint(
                fields=["kind", "embedding_model", "brand_key"],
                condition=models.Q(is_active=True),
                name="threshold_one_active",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=ThresholdKind.values), name="threshold_kind_known"
            ),
            models.CheckConstraint(
                condition=models.Q(value__isnull=True) | models.Q(value__gte=-1, value__lte=1),
                name="threshold_value_is_a_cosine",
            ),
            models.CheckConstraint(
                condition=models.Q(value__isnull=False) | models.Q(is_active=False),
                name="threshold_reset_never_active",
            ),
            models.CheckConstraint(
                condition=models.Q(brand_key="") | models.Q(kind=ThresholdKind.CASE_SIMILARITY),
                name="threshold_brand_only_for_cases",
            ),
            models.CheckConstraint(
                condition=~models.Q(embedding_model=""), name="threshold_model_not_empty"
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.embedding_model}" + (f"/{self.brand_key}" if self.brand_key else "")
        value = "default" if self.value is None else f"{self.value:.3f}"
        return f"{self.get_kind_display()} · {where}: {value}"
