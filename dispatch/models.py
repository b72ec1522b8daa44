"""Dispatch: problem cards (with their own vectors), technicians, service orders and the money
around them. Amounts are `Decimal` in fixed-point columns; every order status change is logged."""

import hashlib
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from knowledge.models import EmbeddableModel, FeedbackBoostedModel, FeedbackSignal

if TYPE_CHECKING:
    from knowledge.embed.spaces import VectorSpace

# --- Normalisation rules ----------------------------------------------------------------------

# An error code as shown on a lock's display: letters, then digits, with or without a separator.
_ERROR_CODE = re.compile(r"^\s*([A-Za-z]{1,4})\s*[-_.\s]?\s*(\d{1,5})\s*$")
_NOT_KEY = re.compile(r"[^0-9a-z]+")


def normalize_error_code(raw: str) -> str:
    """`E21`, `e-21`, `E 21`, `e_21` → `E-21`. Anything else is kept, upper-cased, with runs of
    spaces as one `-` (`low bat` → `LOW-BAT`); blank stays blank."""
    text = (raw or "").strip()
    match = _ERROR_CODE.match(text)
    if match:
        return f"{match.group(1).upper()}-{match.group(2)}"
    return "-".join(text.upper().split())


def normalize_key(raw: str) -> str:
    """The matching key of a brand or model name: lower-case letters and digits only
    (`KG-200`, `kg 200`, `ＫＧ２００` → `kg200`)."""
    import unicodedata

    return _NOT_KEY.sub("", unicodedata.normalize("NFKC", raw or "").lower())


# --- Problem cards ------------------------------------------------------------------------------


class Symptom(models.TextChoices):
    WONT_LOCK = "wont_lock", "Won't lock"
    WONT_UNLOCK = "wont_unlock", "Won't unlock"
    ERROR_CODE = "error_code", "Error code shown"
    BATTERY = "battery", "Battery"
    KEYPAD = "keypad", "Keypad / fingerprint"
    APP = "app", "App / Bluetooth"
    NOISE = "noise", "Mechanical noise"
    DAMAGE = "damage", "Physical damage"
    OTHER = "other", "Other"


class CardStatus(models.TextChoices):
    OPEN = "open", "Open"
    DIAGNOSED = "diagnosed", "Diagnosed"
    DISPATCHED = "dispatched", "Dispatched"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


# Where a card may go from each status: diagnosis, an order and its completion move it along;
# resolved cards are closed or reopened by staff; a cancelled or closed card is final.
CARD_TRANSITIONS: dict[str, tuple[str, ...]] = {
    CardStatus.OPEN: (
        CardStatus.DIAGNOSED,
        CardStatus.DISPATCHED,
        CardStatus.RESOLVED,
        CardStatus.CANCELLED,
    ),
    CardStatus.DIAGNOSED: (CardStatus.DISPATCHED, CardStatus.RESOLVED, CardStatus.CANCELLED),
    CardStatus.DISPATCHED: (CardStatus.RESOLVED, CardStatus.CANCELLED),
    CardStatus.RESOLVED: (CardStatus.CLOSED,),
    CardStatus.CLOSED: (),
    CardStatus.CANCELLED: (),
}


# What a resolved case is, in one place: resolved or closed, with its resolution, and not
# disabled by a curator (a misleading case). The ORM uses the Q (resolved_cases()); the
# diagnosis SQL the same rule as a fragment.
RESOLVED_CASE = Q(status__in=[CardStatus.RESOLVED, CardStatus.CLOSED], is_case_enabled=True) & ~Q(
    resolution=""
)


def resolved_case_sql(card: str) -> str:
    """RESOLVED_CASE as SQL over the card table aliased `card`."""
    return (
        f"{card}.status IN ('{CardStatus.RESOLVED}', '{CardStatus.CLOSED}') "
        f"AND {card}.is_case_enabled AND {card}.resolution <> ''"
    )


class ProblemCardQuerySet(models.QuerySet):
    def resolved_cases(self) -> "ProblemCardQuerySet":
        return self.filter(RESOLVED_CASE)


class ProblemCard(FeedbackBoostedModel, EmbeddableModel):
    """A reported fault: who, which lock, what happens, and what fixed it. Its normalised text
    (`search_text`) is embedded by the shared pipeline into the same two vector slots as chunks,
    so layer 1 of the diagnosis compares cards with cards in the active embedding space."""

    customer_name = models.CharField(max_length=200)
    customer_phone = models.CharField(max_length=40, blank=True)
    customer_line_user_id = models.CharField(max_length=64, blank=True)
    address = models.CharField(max_length=500, blank=True)
    service_area = models.CharField(max_length=100, blank=True)
    brand = models.CharField(max_length=100)
    brand_key = models.CharField(max_length=100, editable=False)
    lock_model = models.CharField(max_length=100, blank=True)
    model_key = models.CharField(max_length=100, blank=True, editable=False)
    symptom = models.CharField(max_length=20, choices=Symptom.choices)
    error_code = models.CharField(max_length=40, blank=True)
    description = models.TextField()
    status = models.CharField(max_length=12, choices=CardStatus.choices, default=CardStatus.OPEN)
    diagnosis = models.JSONField(default=dict, blank=True)
    resolution = models.TextField(blank=True)
    root_cause = models.TextField(blank=True)
    parts_used = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        "Technician", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Curators disable a case that misleads diagnosis; the card itself stays.
    is_case_enabled = models.BooleanField(default=True)
    search_text = models.TextField(editable=False)
    search_text_hash = models.CharField(max_length=64, editable=False)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProblemCardQuerySet.as_manager()

    EMBEDDING_TEXT_FIELD = "search_text"
    EMBEDDING_HASH_FIELD = "search_text_hash"
    EMBEDDING_INDEX_PREFIX = "card"

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(search_text=""), name="card_text_not_empty"),
            # A case without its resolution is not a case (the resolve service guards it too).
            models.CheckConstraint(
                condition=~Q(status__in=["resolved", "closed"]) | ~Q(resolution=""),
                name="card_resolved_has_resolution",
            ),
        ]
        # The HNSW indexes on the vector slots are per embedding space (dispatch migration 0001
        # and knowledge/embed/spaces.py). No index on an embedding bookkeeping column: the
        # pipeline's claims and write-backs stay HOT updates.
        indexes = [
            models.Index(fields=["status", "-created_at"], name="card_status_created_idx"),
            models.Index(fields=["brand_key", "model_key"], name="card_brand_model_idx"),
            models.Index(fields=["error_code"], name="card_error_code_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.brand} {self.lock_model} · {self.get_symptom_display()}"

    def normalize(self) -> None:
        """Set the matching keys, the error code and the text to embed from what was entered."""
        self.brand = self.brand.strip()
        self.lock_model = self.lock_model.strip()
        self.brand_key = normalize_key(self.brand)
        self.model_key = normalize_key(self.lock_model)
        self.error_code = normalize_error_code(self.error_code)
        self.search_text = self.compose_search_text()
        self.search_text_hash = hashlib.sha256(self.search_text.encode("utf-8")).hexdigest()

    def stored_vector(self, space: "VectorSpace") -> list[float] | None:
        """The card's vector of its current text in `space`, when the row holds one."""
        stored = getattr(self, space.column)
        if (
            stored is None
            or getattr(self, space.model_column) != space.model
            or self.embedding_text_hash != self.search_text_hash
        ):
            return None
        values = stored.to_list() if hasattr(stored, "to_list") else list(stored)
        return values if len(values) == space.dimensions else None

    def compose_search_text(self) -> str:
        """What a card means for similarity: lock, symptom, code and the customer's words. The
        resolution is left out: a new card has none, and cards are compared by the problem."""
        parts = [
            f"{self.brand} {self.lock_model}".strip(),
            Symptom(self.symptom).label if self.symptom in Symptom.values else self.symptom,
            f"Error {self.error_code}" if self.error_code else "",
            " ".join(self.description.split()),
        ]
        return "\n".join(part for part in parts if part)


def photo_path(photo: "ProblemCardPhoto", filename: str) -> str:
    return f"problem-cards/{photo.card_id}/{filename}"


class ProblemCardPhoto(models.Model):
    card = models.ForeignKey(ProblemCard, on_delete=models.CASCADE, related_name="photos")
    image = models.FileField(upload_to=photo_path)
    content_type = models.CharField(max_length=40)  # checked from the bytes, not the upload
    size = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["uploaded_at", "id"]

    def __str__(self) -> str:
        return f"Photo of card #{self.card_id}"


class DiagnosisRecord(models.Model):
    """Every diagnosis decision, kept for evaluation: which layer answered, why, and with what."""

    card = models.ForeignKey(ProblemCard, on_delete=models.CASCADE, related_name="diagnoses")
    layer = models.PositiveSmallIntegerField(
        choices=[(1, "Similar case"), (2, "Manuals"), (3, "Escalated")]
    )
    reason = models.TextField()
    embedding_model = models.CharField(max_length=100, blank=True)
    best_similarity = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Card #{self.card_id}: layer {self.layer}"


class CaseFeedback(FeedbackSignal):
    """An outcome signal on a resolved case (the rule and the services: knowledge/feedback.py,
    dispatch/feedback.py)."""

    card = models.ForeignKey(ProblemCard, on_delete=models.CASCADE, related_name="feedback_signals")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "case feedback signal"
        constraints = [
            models.UniqueConstraint(
                fields=["card", "reason", "origin_ref"], name="case_feedback_once_per_origin"
            ),
            models.CheckConstraint(
                condition=Q(reverted_at__isnull=True, revert_cause="")
                | Q(reverted_at__isnull=False) & ~Q(revert_cause=""),
                name="case_feedback_revert_has_cause",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.delta:+.2f} on case #{self.card_id} ({self.origin_ref})"


# --- Technicians --------------------------------------------------------------------------------


class Technician(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=40, blank=True)
    service_areas = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    rating = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("4.00"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("5"))],
    )
    daily_capacity = models.PositiveSmallIntegerField(default=4)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__gte=0, rating__lte=5), name="technician_rating_0_5"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TechnicianSkill(models.Model):
    """How well a technician handles a brand (and optionally one symptom category): 0–5."""

    technician = models.ForeignKey(Technician, on_delete=models.CASCADE, related_name="skills")
    brand_key = models.CharField(max_length=100)
    symptom = models.CharField(max_length=20, blank=True, choices=Symptom.choices)  # blank: all
    level = models.PositiveSmallIntegerField(validators=[MaxValueValidator(5)])

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["technician", "brand_key", "symptom"], name="skill_unique_per_brand_symptom"
            ),
            models.CheckConstraint(condition=Q(level__lte=5), name="skill_level_0_5"),
        ]

    def __str__(self) -> str:
        return f"{self.brand_key}/{self.symptom or '*'}: {self.level}"


# --- Service orders -----------------------------------------------------------------------------


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created"
    ASSIGNED = "assigned", "Assigned"
    EN_ROUTE = "en_route", "En route"
    ON_SITE = "on_site", "On site"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


# Orders still being worked on: one of them at most per card, and only they can be cancelled.
OPEN_ORDER_STATUSES = (
    OrderStatus.CREATED,
    OrderStatus.ASSIGNED,
    OrderStatus.EN_ROUTE,
    OrderStatus.ON_SITE,
)

# Where an order may go from each status: forward one step at a time, or cancelled while open.
# Assigning again (another technician) keeps `assigned` and is order_assign's business.
ORDER_TRANSITIONS: dict[str, tuple[str, ...]] = {
    OrderStatus.CREATED: (OrderStatus.ASSIGNED, OrderStatus.CANCELLED),
    OrderStatus.ASSIGNED: (OrderStatus.EN_ROUTE, OrderStatus.CANCELLED),
    OrderStatus.EN_ROUTE: (OrderStatus.ON_SITE, OrderStatus.CANCELLED),
    OrderStatus.ON_SITE: (OrderStatus.COMPLETED, OrderStatus.CANCELLED),
    OrderStatus.COMPLETED: (),
    OrderStatus.CANCELLED: (),
}


class ServiceOrder(models.Model):
    card = models.ForeignKey(ProblemCard, on_delete=models.PROTECT, related_name="orders")
    technician = models.ForeignKey(
        Technician, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    address = models.CharField(max_length=500)
    # Where the visit is, when known: matching adds the distance (earthdistance) to its reasons.
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    scheduled_start = models.DateTimeField(null=True, blank=True)
    scheduled_end = models.DateTimeField(null=True, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=OrderStatus.choices, default=OrderStatus.CREATED
    )
    work_done = models.TextField(blank=True)
    parts_used = models.TextField(blank=True)
    # Said on completion: did the fix match the card's diagnosis? Yes raises the cases or passages
    # the diagnosis cited, no lowers them (dispatch/feedback.py); empty: not said.
    diagnosis_matched = models.BooleanField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scheduled_end__isnull=True)
                | Q(scheduled_start__isnull=True)
                | Q(scheduled_end__gt=models.F("scheduled_start")),
                name="order_window_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["created", "cancelled"]) | Q(technician__isnull=False),
                name="order_assigned_has_technician",
            ),
            # A card is worked on by one order at a time; a cancelled visit may be followed by
            # another order (order_create checks first; this stops a race).
            models.UniqueConstraint(
                fields=["card"],
                condition=Q(status__in=["created", "assigned", "en_route", "on_site"]),
                name="order_one_open_per_card",
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True, longitude__isnull=True)
                | Q(latitude__isnull=False, longitude__isnull=False),
                name="order_location_both_or_neither",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_start"], name="order_status_start_idx"),
            models.Index(fields=["technician", "scheduled_start"], name="order_tech_start_idx"),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.get_status_display()})"


class OrderEvent(models.Model):
    """The audit log of an order: every status change (and assignment), who and when."""

    order = models.ForeignKey(ServiceOrder, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(max_length=200)  # the user, or the API key that acted
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} → {self.to_status} by {self.actor_label}"


# --- Quotes, settlements, invoices ----------------------------------------------------------------

MONEY = {"max_digits": 12, "decimal_places": 2}


class QuoteItem(models.Model):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    unit_price = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="quote_item_price_positive")
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class OrderLine(models.Model):
    """A quoted line of an order; the item's name and price are copied when the line is added,
    so a later price change never rewrites a past quote."""

    order = models.ForeignKey(ServiceOrder, on_delete=models.CASCADE, related_name="lines")
    item = models.ForeignKey(QuoteItem, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=8, decimal_places=2)
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description} × {self.quantity}"


class Settlement(models.Model):
    """What the technician is owed for one order; an order is settled once."""

    order = models.OneToOneField(ServiceOrder, on_delete=models.PROTECT, related_name="settlement")
    technician = models.ForeignKey(Technician, on_delete=models.PROTECT, related_name="settlements")
    basis = models.CharField(max_length=10, choices=[("share", "Share"), ("fee", "Fixed fee")])
    share_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    amount = models.DecimalField(**MONEY)
    settled_by = models.CharField(max_length=200)
    settled_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Settlement of order #{self.order_id}: {self.amount}"


class Invoice(models.Model):
    order = models.OneToOneField(ServiceOrder, on_delete=models.PROTECT, related_name="invoice")
    number = models.CharField(max_length=20, unique=True)
    issued_on = models.DateField()
    buyer_name = models.CharField(max_length=200)
    buyer_tax_id = models.CharField(max_length=8, blank=True)  # Taiwan 統一編號, checksum-verified
    subtotal = models.DecimalField(**MONEY)
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    issued_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(total=models.F("subtotal") + models.F("tax")),
                name="invoice_total_is_subtotal_plus_tax",
            ),
        ]

    def __str__(self) -> str:
        return self.number
