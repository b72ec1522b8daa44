"""What LINE sent (each webhook event, once) and what Kioku answered (each reply, with its
attempts): a reply that fails is kept and retried, never lost with the message it answers."""

import uuid

from django.db import models


def line_session_key(user_id: str) -> str:
    """The chat session of a LINE user: what they sent and what Kioku replied."""
    return f"line:{user_id}"


class EventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (a kind not handled yet)"
    LIMITED = "limited", "Not handled: the user sent too many messages too fast"
    FAILED = "failed", "Failed"


class LineEvent(models.Model):
    # LINE's own id: a redelivered event has the same one and is not processed twice.
    webhook_event_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=32)  # message, follow, postback…
    message_kind = models.CharField(max_length=32, blank=True)  # text, image…
    user_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=EventStatus.choices, default=EventStatus.RECEIVED
    )
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "LINE event"
        ordering = ["-received_at", "-id"]
        # The rate limit counts a user's events of the last minute for every event it handles.
        indexes = [models.Index(fields=["user_id", "received_at"], name="line_event_user_recent")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.message_kind or '-'} from {self.user_id or '?'}"


class LineStaffUser(models.Model):
    """A LINE user allowed the staff commands (`status`), added in the admin."""

    user_id = models.CharField(max_length=64, unique=True, help_text="The LINE user id (U…).")
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LINE staff user"

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"


class ReplyStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class LineReply(models.Model):
    """A message Kioku sends: a reply to the event (its reply token), or, with no token, a push
    to `push_to` (e.g. the result of a `sync`, sent when the work is done)."""

    event = models.ForeignKey(LineEvent, on_delete=models.CASCADE, related_name="replies")
    reply_token = models.CharField(max_length=255, blank=True)
    push_to = models.CharField(max_length=64, blank=True)
    # Sent as X-Line-Retry-Key with a push: LINE delivers a retried push once.
    retry_key = models.UUIDField(default=uuid.uuid4, editable=False)
    messages = models.JSONField()  # LINE's message objects, as sent
    status = models.CharField(
        max_length=8, choices=ReplyStatus.choices, default=ReplyStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    answer = models.ForeignKey(
        "knowledge.Answer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "LINE reply"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        kind = "reply to" if self.reply_token else f"push to {self.push_to} after"
        return f"{kind} {self.event} ({self.status})"


class IntakeStep(models.TextChoices):
    BRAND = "brand", "Brand"
    MODEL = "model", "Model"
    SYMPTOM = "symptom", "Symptom"
    ERROR_CODE = "error_code", "Error code"
    DESCRIPTION = "description", "Description"
    PHOTO = "photo", "Photos"
    DONE = "done", "Done"


class IntakeStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled by the customer"
    EXPIRED = "expired", "Expired (no answer in time)"


class LineIntake(models.Model):
    """A customer's guided fault report on LINE, one question at a time (line_channel/intake.py).
    The problem card is filed once the description is given; photos follow, then the diagnosis."""

    user_id = models.CharField(max_length=64)
    language = models.CharField(
        max_length=2,
        choices=[("zh", "Traditional Chinese"), ("ja", "Japanese"), ("en", "English")],
    )
    step = models.CharField(max_length=12, choices=IntakeStep.choices, default=IntakeStep.BRAND)
    status = models.CharField(
        max_length=10, choices=IntakeStatus.choices, default=IntakeStatus.ACTIVE
    )
    brand = models.CharField(max_length=100, blank=True)
    lock_model = models.CharField(max_length=100, blank=True)
    symptom = models.CharField(max_length=20, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    card = models.ForeignKey(
        "dispatch.ProblemCard",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="line_intakes",
    )
    diagnosis_layer = models.PositiveSmallIntegerField(null=True, blank=True)
    # The customer's word on the diagnosis (the quick reply under it): solved or still broken.
    customer_solved = models.BooleanField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "LINE intake"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user_id"],
                condition=models.Q(status="active"),
                name="line_intake_one_active_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"intake of {self.user_id} ({self.status}, {self.step})"


class SyncStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    FETCHING = "fetching", "Fetching the web sources"
    EMBEDDING = "embedding", "Waiting for the embedding"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


# A run in one of these is going: a second `sync` is told so instead of starting.
SYNC_GOING = [SyncStatus.QUEUED, SyncStatus.FETCHING, SyncStatus.EMBEDDING]


class LineSyncRun(models.Model):
    """A staff `sync` (UC-SYNC-001): every web source re-fetched, what changed embedded, and a
    push to the staff member when that work is done. The lists hold `{"id", "title", "uri"}`
    per source (`failed` adds `"error"`), written as each source is fetched."""

    user_id = models.CharField(max_length=64)
    event = models.ForeignKey(LineEvent, on_delete=models.CASCADE, related_name="sync_runs")
    status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)  # web sources when the fetch began
    added = models.JSONField(default=list, blank=True)
    updated = models.JSONField(default=list, blank=True)
    unchanged = models.JSONField(default=list, blank=True)
    failed = models.JSONField(default=list, blank=True)
    # Chunks of the added and updated sources not embedded when the push was sent (0: all were),
    # and those that could not be embedded (dead letters).
    pending_chunks = models.PositiveIntegerField(default=0)
    dead_chunks = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    push = models.ForeignKey(
        LineReply, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved on by every fetched source and every embedding check: a going run that stops moving
    # (its worker died) no longer holds back the next sync.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "LINE sync run"
        ordering = ["-created_at", "-id"]
        constraints = [
            # One run at a time, even when two staff members send `sync` at once.
            models.UniqueConstraint(
                models.Value(True),
                condition=models.Q(status__in=SYNC_GOING),
                name="line_sync_one_going",
            )
        ]

    def __str__(self) -> str:
        return f"sync by {self.user_id} ({self.status})"
