from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.functions import Now
from django.urls import reverse
from pgvector.django import HalfVectorField


class SourceType(models.TextChoices):
    DOCUMENT = "document", "Document"
    MANUAL = "manual", "Manual"
    SOP = "sop", "SOP"
    FAQ = "faq", "FAQ"
    WEB = "web", "Web page"
    SESSION = "session", "Chat session"
    CASE = "case", "Resolved case"


class SourceStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # stored; chunks still waiting for embeddings
    READY = "ready", "Ready"  # every enabled chunk embedded
    PARTIAL = "partial", "Partial"  # some chunks failed to embed (dead letters)
    FAILED = "failed", "Failed"  # could not be extracted/fetched; see error_message


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Embedded"
    DEAD = "dead", "Dead letter"


def embedding_requeue_fields() -> dict:
    """Column values that put an embeddable row back in the queue with a fresh set of attempts
    (any vector it has stays until replaced)."""
    from django.utils import timezone

    return {
        "embedding_status": EmbeddingStatus.PENDING,
        "embedding_attempts": 0,
        "embedding_next_attempt_at": timezone.now(),
        "embedding_claimed_until": None,
    }


# The two vector slots of every embeddable row: (vector column, model column). Search reads the
# active slot; a model switch fills the other one, then flips (knowledge/embed/spaces.py).
EMBEDDING_SLOTS = {1: ("embedding", "embedding_model"), 2: ("embedding_alt", "embedding_alt_model")}


class EmbeddableModel(models.Model):
    """The embedding bookkeeping every embeddable row shares (chunks now, problem cards later).

    "Nothing lost" rests on these columns, not on the task queue: `embedding_status` says what is
    owed, `embedding_claimed_until` is the lease of the worker holding the row, `embedding_attempts`
    is committed before the provider is called, and `embedding_text_hash` is the hash of the text
    the stored vector was computed from.

    Vectors live in two slots (EMBEDDING_SLOTS) without a fixed size: each slot holds the vectors
    of one embedding space (model + dimensions) and has an HNSW index on a cast to that size,
    managed by knowledge/embed/spaces.py. Any vector in either slot was computed from the
    row's current text (edits clear both); the bookkeeping columns describe the slot the pipeline
    is filling (the target of a model switch, else the active slot).
    """

    embedding = HalfVectorField(null=True, blank=True)
    embedding_model = models.CharField(max_length=100, blank=True)
    embedding_alt = HalfVectorField(null=True, blank=True)
    embedding_alt_model = models.CharField(max_length=100, blank=True)
    embedding_text_hash = models.CharField(max_length=64, blank=True)
    embedding_status = models.CharField(
        max_length=10, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING
    )
    embedding_attempts = models.PositiveSmallIntegerField(default=0)
    embedding_next_attempt_at = models.DateTimeField(db_default=Now())
    embedding_claimed_until = models.DateTimeField(null=True, blank=True)
    embedding_last_error = models.TextField(blank=True)
    embedding_errors = models.JSONField(default=list, blank=True)
    embedded_at = models.DateTimeField(null=True, blank=True)

    # Which columns hold the text to embed and its hash (the processor compares the hash).
    EMBEDDING_TEXT_FIELD = "content"
    EMBEDDING_HASH_FIELD = "content_hash"
    # Prefix of the vector index names: <prefix>_<slot column>_hnsw_<dimensions>.
    EMBEDDING_INDEX_PREFIX = ""
    # The stored token count of the text and the name of the counter that made it, if the model
    # keeps them: the pipeline then packs requests without counting again (when the counter in
    # use is the same one).
    EMBEDDING_TOKEN_FIELDS: tuple[str, str] | None = None

    class Meta:
        abstract = True

    @classmethod
    def embedding_batch_done(cls, ids: list[int]) -> None:
        """Hook run after a batch of these rows was processed (e.g. to update parent status)."""


class FeedbackBoostedModel(models.Model):
    """A row whose rank outcome signals move (chunks, dispatch's cases): `feedback_boost` is the
    sum of its signals not reverted, within ± KIOKU_FEEDBACK_MAX_BOOST, written only by
    knowledge/feedback.py (an UPDATE under the row's lock). A full save() of an instance read
    earlier leaves it alone, so an edit never puts back the boost it happened to read."""

    feedback_boost = models.FloatField(default=0.0, db_default=0.0, editable=False)

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key
                and not getattr(field, "generated", False)
                and field.name != "feedback_boost"
            ]
        super().save(*args, **kwargs)


# What search may read, in one place: a source that is enabled and not superseded; a chunk of
# such a source that is enabled and not expired. The ORM uses the Q objects (through the
# `searchable()` QuerySet methods); the raw search SQL uses the same rule as an SQL fragment.
SEARCHABLE_SOURCE = Q(enabled=True, superseded_by__isnull=True)
SEARCHABLE_CHUNK = Q(
    Q(valid_until__isnull=True) | Q(valid_until__gt=Now()),
    enabled=True,
    source__enabled=True,
    source__superseded_by__isnull=True,
)


def searchable_source_sql(source: str) -> str:
    """SEARCHABLE_SOURCE as SQL over the source table aliased `source`."""
    return f"{source}.enabled AND {source}.superseded_by_id IS NULL"


def searchable_chunk_sql(chunk: str, source: str) -> str:
    """SEARCHABLE_CHUNK as SQL over the chunk table aliased `chunk` joined to its source."""
    return (
        f"{chunk}.enabled AND ({chunk}.valid_until IS NULL OR {chunk}.valid_until > now()) "
        f"AND {searchable_source_sql(source)}"
    )


class KnowledgeSourceQuerySet(models.QuerySet):
    def searchable(self) -> "KnowledgeSourceQuerySet":
        return self.filter(SEARCHABLE_SOURCE)


class KnowledgeSource(models.Model):
    source_type = models.CharField(max_length=16, choices=SourceType.choices)
    title = models.CharField(max_length=500)
    uri = models.CharField(
        max_length=2000,
        blank=True,
        help_text="File path or URL; identifies the source on re-ingest.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    byte_size = models.PositiveBigIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=SourceStatus.choices, default=SourceStatus.PENDING
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes"
    )
    fetch_interval = models.DurationField(
        null=True, blank=True, help_text="Web sources: re-fetch this often (empty: never)."
    )
    fetched_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = KnowledgeSourceQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["uri"], condition=~Q(uri=""), name="source_unique_uri"),
            models.CheckConstraint(condition=~Q(title=""), name="source_title_not_empty"),
        ]
        indexes = [
            models.Index(fields=["source_type", "status"], name="source_type_status_idx"),
            # Used by the web re-fetch schedule.
            models.Index(
                fields=["fetched_at"], name="source_web_due_idx", condition=Q(source_type="web")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_source_type_display()})"


def chunk_url(chunk_id: int) -> str:
    """Where a chunk is shown (its source page, scrolled to it): what citations link to."""
    return reverse("knowledge:chunk-detail", kwargs={"chunk_id": chunk_id})


class KnowledgeChunkQuerySet(models.QuerySet):
    def searchable(self) -> "KnowledgeChunkQuerySet":
        """Chunks search may return: enabled, not expired, of an enabled, current source."""
        return self.filter(SEARCHABLE_CHUNK)


class ChunkSearchVector(Func):
    """The keyword-search document of a chunk (SQL function from knowledge migration 0001): words
    through the 'simple' parser, CJK runs as overlapping character bigrams (as pg_bigm indexes
    them), and the heading path weighted A."""

    function = "kioku_chunk_search_vector"
    output_field = SearchVectorField()


class KnowledgeChunk(FeedbackBoostedModel, EmbeddableModel):
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    content = models.TextField()
    content_hash = models.CharField(max_length=64)
    token_count = models.PositiveIntegerField()
    token_counter = models.CharField(
        max_length=40,
        blank=True,
        db_default="",
        help_text="The counter that produced token_count (cl100k_base, estimator); blank: unknown.",
    )
    location = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    pinned = models.BooleanField(default=False, help_text="Boosted in search ranking.")
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="Drops out of search after."
    )
    search_vector = models.GeneratedField(
        expression=ChunkSearchVector(F("content"), F("location")),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = KnowledgeChunkQuerySet.as_manager()

    EMBEDDING_INDEX_PREFIX = "chunk"
    EMBEDDING_TOKEN_FIELDS = ("token_count", "token_counter")

    class Meta:
        ordering = ["source_id", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["source", "ordinal"], name="chunk_unique_ordinal"),
            models.CheckConstraint(condition=~Q(content=""), name="chunk_content_not_empty"),
            models.CheckConstraint(
                condition=Q(token_count__gte=1), name="chunk_token_count_positive"
            ),
        ]
        # The HNSW indexes on the vector slots are expression indexes per embedding space, made
        # by migration 0005 and knowledge/embed/spaces.py, not declared here. No index may use
        # an embedding bookkeeping column: the pipeline's claims and write-backs must stay HOT
        # updates (knowledge/embed/queue.py; migration 0007 also sets fillfactor 50 for them).
        indexes = [
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            models.Index(fields=["content_hash"], name="chunk_content_hash_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}#{self.ordinal}"

    @classmethod
    def embedding_batch_done(cls, ids: list[int]) -> None:
        """Sources of these chunks become ready (all embedded), partial (some dead letters) or
        stay pending."""
        from django.db import connection

        source_table = KnowledgeSource._meta.db_table
        chunk_table = cls._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE {source_table} AS source SET status = CASE
                    WHEN counts.dead > 0 THEN 'partial'
                    WHEN counts.pending > 0 THEN 'pending'
                    ELSE 'ready' END, updated_at = now()
                FROM (
                    SELECT source_id,
                        count(*) FILTER (WHERE embedding_status = 'dead') AS dead,
                        count(*) FILTER (WHERE embedding_status = 'pending') AS pending
                    FROM {chunk_table}
                    WHERE enabled AND source_id IN (SELECT DISTINCT source_id FROM {chunk_table} WHERE id = ANY(%s))
                    GROUP BY source_id
                ) AS counts
                WHERE source.id = counts.source_id AND source.status <> 'failed'
                """,
                [ids],
            )


class EmbeddingDue(models.Model):
    """The embedding queue: one entry per pending embeddable row, due at its
    `embedding_next_attempt_at`, or at the end of its lease while a worker holds it. Kept by the
    triggers of knowledge/embed/queue.py; the processor claims rows through it and moves a
    claimed row's due time to its lease end."""

    pk = models.CompositePrimaryKey("table_name", "row_id")
    table_name = models.CharField(max_length=63)
    row_id = models.BigIntegerField()
    due_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["table_name", "due_at", "row_id"], name="embedding_due_order_idx")
        ]

    def __str__(self) -> str:
        return f"{self.table_name}#{self.row_id} due {self.due_at:%Y-%m-%d %H:%M:%S}"


class EmbeddingPipelineState(models.Model):
    """One row: whether the embedding pipeline is paused (e.g. the provider's quota is used up)
    and why. Shown on the index dashboard; workers check it before claiming work."""

    paused_until = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "embedding pipeline state"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="pipeline_state_single_row")]

    def __str__(self) -> str:
        return f"paused: {self.paused_reason}" if self.is_paused() else "running"

    @classmethod
    def load(cls) -> "EmbeddingPipelineState":
        state, _ = cls.objects.get_or_create(id=1)
        return state

    def is_paused(self) -> bool:
        from django.utils import timezone

        return self.paused_until is not None and self.paused_until > timezone.now()


class EmbeddingSpaceState(models.Model):
    """One row: which embedding space search reads (the *active* slot, model and dimensions) and,
    while a model switch runs, the space being filled in the other slot (the *target*). After a
    cutover the old slot is *retired*: its index is dropped and its vectors cleared in batches.

    No row yet means nothing was embedded: the configured model becomes the active space at the
    first write."""

    active_slot = models.PositiveSmallIntegerField(default=1)
    active_model = models.CharField(max_length=100)
    active_dimensions = models.PositiveIntegerField()
    target_model = models.CharField(max_length=100, blank=True)
    target_dimensions = models.PositiveIntegerField(null=True, blank=True)
    switch_started_at = models.DateTimeField(null=True, blank=True)
    switched_at = models.DateTimeField(null=True, blank=True)
    # Set once every row lacking a target vector has been queued: only then may the switch
    # complete when nothing is pending.
    switch_queued_at = models.DateTimeField(null=True, blank=True)
    retired_model = models.CharField(max_length=100, blank=True)
    retired_dimensions = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "embedding space"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="embedding_space_single_row"),
            models.CheckConstraint(condition=Q(active_slot__in=[1, 2]), name="active_slot_1_or_2"),
        ]

    def __str__(self) -> str:
        text = f"{self.active_model} ({self.active_dimensions})"
        if self.target_model:
            text += f" → {self.target_model} ({self.target_dimensions})"
        return text


def embeddable_models() -> list[type[EmbeddableModel]]:
    """Every model whose rows the processor embeds: each concrete EmbeddableModel of an installed
    app (chunks, dispatch's problem cards), chunks first."""
    from django.apps import apps

    found = [
        model
        for model in apps.get_models()
        if issubclass(model, EmbeddableModel) and not model._meta.proxy
    ]
    return sorted(found, key=lambda model: model is not KnowledgeChunk)


class DeadLetterChunkManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(embedding_status=EmbeddingStatus.DEAD)


class DeadLetterChunk(KnowledgeChunk):
    """Chunks whose embedding failed too often: kept with their error history, never deleted."""

    objects = DeadLetterChunkManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter (embedding)"
        verbose_name_plural = "dead letters (embedding)"


# --- Answers ------------------------------------------------------------------------------------


class AnswerOutcome(models.TextChoices):
    ANSWERED = "answered", "Answered"
    NO_RELEVANT = "no_relevant", "No relevant documents"
    INDEX_NOT_BUILT = "index_not_built", "Index not built"
    FAILED = "failed", "Failed"


class AnswerMode(models.TextChoices):
    ONLINE = "online", "Online (language model)"
    OFFLINE = "offline", "Offline (extractive)"


class AnswerFeedback(models.TextChoices):
    NONE = "", "No feedback"
    HELPFUL = "helpful", "Helpful"
    NOT_HELPFUL = "not_helpful", "Not helpful"


class AnswerQuerySet(models.QuerySet):
    def needs_curation(self) -> "AnswerQuerySet":
        """The curation queue: answers someone marked as not helpful."""
        return self.filter(feedback=AnswerFeedback.NOT_HELPFUL)

    def content_gaps(self) -> "AnswerQuerySet":
        """Questions the knowledge base had nothing relevant for (people's and bots', not the
        evaluation's own questions, whose refusals are expected)."""
        return self.filter(outcome=AnswerOutcome.NO_RELEVANT).exclude(channel="eval")


class Answer(models.Model):
    """One question asked (page, API or CLI) and what came back, kept for curation."""

    question = models.TextField()
    # Lower-cased, punctuation and extra spaces removed: groups the content-gap list.
    question_normalized = models.TextField(db_index=True)
    language = models.CharField(max_length=8)
    answer = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=AnswerOutcome.choices)
    mode = models.CharField(max_length=8, choices=AnswerMode.choices)
    model = models.CharField(max_length=100, blank=True)
    top_k = models.PositiveSmallIntegerField()
    filters = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    channel = models.CharField(max_length=8, help_text="web, api, cli or eval (an evaluation run)")
    asked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="answers_asked",
    )
    api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="answers"
    )
    feedback = models.CharField(
        max_length=12, choices=AnswerFeedback.choices, default=AnswerFeedback.NONE, blank=True
    )
    feedback_comment = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    feedback_by = models.CharField(
        max_length=150, blank=True, help_text="User name or API key name."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(question=""), name="answer_question_not_empty"),
        ]
        indexes = [
            # Used by the curation queue.
            models.Index(
                fields=["-created_at"],
                name="answer_not_helpful_idx",
                condition=Q(feedback="not_helpful"),
            ),
            models.Index(fields=["outcome", "-created_at"], name="answer_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.question[:60]}"

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class AnswerSource(models.Model):
    """A passage retrieved for an answer: number [rank] in the prompt, `cited` when the answer
    refers to it. Title and text are copied so the record survives edits to the chunk."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="sources")
    chunk = models.ForeignKey(
        KnowledgeChunk, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_id = models.PositiveBigIntegerField()
    source_title = models.CharField(max_length=500)
    quoted_text = models.TextField()
    score = models.FloatField()
    vector_score = models.FloatField(null=True, blank=True)
    keyword_score = models.FloatField(null=True, blank=True)
    rank = models.PositiveSmallIntegerField()
    cited = models.BooleanField(default=False)

    class Meta:
        ordering = ["answer_id", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["answer", "rank"], name="answer_source_unique_rank"),
        ]

    def __str__(self) -> str:
        return f"[{self.rank}] {self.source_title}"


# --- Outcome feedback -----------------------------------------------------------------------------


class FeedbackReason(models.TextChoices):
    ORDER_FIX_MATCHED = "order_fix_matched", "Order: the fix matched the diagnosis"
    DIAGNOSIS_WRONG = "diagnosis_wrong", "Order: the diagnosis was wrong"
    ANSWER_NOT_HELPFUL = "answer_not_helpful", "Answer marked not helpful"


class RevertCause(models.TextChoices):
    NONE = "", "Not reverted"
    WITHDRAWN = "withdrawn", "Withdrawn where it came from"  # e.g. the answer marked helpful again
    CURATOR = "curator", "Reverted by a curator"


class FeedbackSignal(models.Model):
    """One outcome signal on a target (a chunk here, a case in dispatch): append-only; reverting
    it keeps the row and says who and when. `origin_ref` names what caused it (`order:12`,
    `answer:5`): one signal per target, reason and origin, so repeating the cause changes
    nothing."""

    delta = models.FloatField()
    reason = models.CharField(max_length=24, choices=FeedbackReason.choices)
    origin_ref = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.CharField(max_length=150, blank=True, help_text="User or API key name.")
    revert_cause = models.CharField(
        max_length=12, choices=RevertCause.choices, default=RevertCause.NONE, blank=True
    )

    class Meta:
        abstract = True

    @property
    def is_reverted(self) -> bool:
        return self.reverted_at is not None


class ChunkFeedback(FeedbackSignal):
    """An outcome signal on a passage. Identified by its source and text (`content_hash`), not by
    the chunk row: re-chunking a source recreates its rows, and the signals of text that did not
    change find their new row again (knowledge/feedback.py, chunk_feedback_reattach)."""

    chunk = models.ForeignKey(
        KnowledgeChunk,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback_signals",
    )
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="+")
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "chunk feedback signal"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "content_hash", "reason", "origin_ref"],
                name="chunk_feedback_once_per_origin",
            ),
            models.CheckConstraint(
                condition=Q(reverted_at__isnull=True, revert_cause="")
                | Q(reverted_at__isnull=False) & ~Q(revert_cause=""),
                name="chunk_feedback_revert_has_cause",
            ),
        ]
        indexes = [
            # Used by chunk_feedback_withdraw (an answer's signals).
            models.Index(fields=["origin_ref"], name="chunk_feedback_origin_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.delta:+.2f} on chunk {self.chunk_id or '(gone)'} ({self.origin_ref})"
