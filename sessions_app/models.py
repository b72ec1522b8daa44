from datetime import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # holds messages not archived yet
    ARCHIVED = "archived", "Archived"  # every message is in knowledge (or linked to it)
    SKIPPED = "skipped", "Skipped"  # the archiver declined it; see skip_reason


class SkipReason(models.TextChoices):
    TOO_FEW_USER_MESSAGES = "too_few_user_messages", "Too few user messages"
    BOT_ONLY = "bot_only", "Only bot messages"


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    SYSTEM = "system", "System"


class ChatSessionQuerySet(models.QuerySet):
    def archive_due(self, *, idle_before: datetime) -> "ChatSessionQuerySet":
        """Sessions the archiver should look at: messages not archived yet, idle long enough."""
        return self.filter(status=SessionStatus.ACTIVE, last_active_at__lt=idle_before)


class ChatSession(models.Model):
    """A conversation in one place (a Discord thread, a Slack channel, a support chat).

    `key` is explicit or derived as "platform:channel:thread". `version` is bumped by every append
    and every archive; the archiver writes only if the version it read is still current.
    `archived_through_id` is the watermark: messages with a higher id are not archived yet.
    """

    key = models.CharField(max_length=200, unique=True)
    platform = models.CharField(max_length=50, blank=True)
    channel = models.CharField(max_length=200, blank=True)
    thread = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=200, blank=True)
    participants = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    status = models.CharField(
        max_length=10, choices=SessionStatus.choices, default=SessionStatus.ACTIVE
    )
    version = models.PositiveBigIntegerField(default=1)
    last_active_at = models.DateTimeField(db_default=Now())
    created_at = models.DateTimeField(db_default=Now())

    # Archive bookkeeping.
    archived_through_id = models.BigIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)
    archived_message_count = models.PositiveIntegerField(default=0)
    archive_attempts = models.PositiveIntegerField(default=0)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    archive_note = models.CharField(max_length=300, blank=True)
    source = models.ForeignKey(
        "knowledge.KnowledgeSource",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The knowledge source holding this session's archived transcript.",
    )
    duplicate_of = models.ForeignKey(
        "knowledge.KnowledgeSource",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Existing session knowledge this archive was a near-duplicate of (linked).",
    )

    objects = ChatSessionQuerySet.as_manager()

    class Meta:
        indexes = [
            # Used by the archive schedule.
            models.Index(
                fields=["last_active_at"],
                name="session_archive_due_idx",
                condition=Q(status="active"),
            ),
            models.Index(fields=["platform", "channel"], name="session_platform_channel_idx"),
        ]

    def __str__(self) -> str:
        return self.title or self.key


class Message(models.Model):
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=MessageRole.choices, default=MessageRole.USER)
    author = models.CharField(max_length=200, blank=True)
    is_bot = models.BooleanField(default=False)
    content = models.TextField()
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["session_id", "id"]
        constraints = [
            # A bot retrying the same platform message does not create a duplicate.
            models.UniqueConstraint(
                fields=["session", "external_id"],
                condition=~Q(external_id=""),
                name="message_unique_external_id",
            ),
        ]
        indexes = [models.Index(fields=["session", "id"], name="message_session_id_idx")]

    def __str__(self) -> str:
        return f"{self.author or self.role}: {self.content[:60]}"

    @property
    def is_user_message(self) -> bool:
        """Counts toward the archiver's minimum: a person's message, not a bot's."""
        return self.role == MessageRole.USER and not self.is_bot


# Table names for the raw SQL of the hot paths (append, recent context, pruning).
SESSION_TABLE = ChatSession._meta.db_table
MESSAGE_TABLE = Message._meta.db_table
