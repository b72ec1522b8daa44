from datetime import datetime, timedelta

from ninja import Field, Schema

from knowledge.models import SourceStatus, SourceType


class SourceTextIn(Schema):
    title: str = Field(min_length=1, max_length=500)
    text: str = Field(description="The document text.")
    format: str = Field("text", pattern="^(text|markdown|html)$")
    source_type: SourceType = SourceType.DOCUMENT
    uri: str = Field(
        "",
        max_length=2000,
        description="Identifies the source; re-posting the same uri updates it.",
    )
    metadata: dict = Field(default_factory=dict)


class SourceWebIn(Schema):
    url: str = Field(min_length=8, max_length=2000)
    title: str = Field("", max_length=500)
    source_type: SourceType = SourceType.WEB
    metadata: dict = Field(default_factory=dict)
    fetch_interval_minutes: int | None = Field(None, ge=5, le=60 * 24 * 365)


class SourcePatchIn(Schema):
    title: str | None = Field(None, min_length=1, max_length=500)
    source_type: SourceType | None = None
    metadata: dict | None = None
    replace_metadata: bool = False
    enabled: bool | None = None
    fetch_interval_minutes: int | None = Field(None, ge=5, le=60 * 24 * 365)


class SourceOut(Schema):
    id: int
    source_type: SourceType
    title: str
    uri: str
    metadata: dict
    status: SourceStatus
    error_code: str
    error_message: str
    enabled: bool
    superseded_by_id: int | None
    content_hash: str
    byte_size: int
    version: int
    chunk_count: int = 0
    embedded_count: int = 0
    fetch_interval_minutes: int | None = None
    fetched_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_chunk_count(obj) -> int:
        return obj.n_chunks if hasattr(obj, "n_chunks") else obj.chunks.count()

    @staticmethod
    def resolve_embedded_count(obj) -> int:
        if hasattr(obj, "n_embedded"):
            return obj.n_embedded
        return obj.chunks.filter(embedding_status="done").count()

    @staticmethod
    def resolve_fetch_interval_minutes(obj) -> int | None:
        interval: timedelta | None = obj.fetch_interval
        return int(interval.total_seconds() // 60) if interval else None


class IngestOut(Schema):
    outcome: str = Field(description="created, updated or unchanged")
    chunks: int
    tokens: int
    embeddings_kept: int
    source: SourceOut


class ChunkOut(Schema):
    id: int
    source_id: int
    ordinal: int
    content: str
    token_count: int
    location: dict
    enabled: bool
    pinned: bool
    valid_until: datetime | None
    embedding_status: str
    embedding_model: str
    embedded_at: datetime | None


class ChunkPatchIn(Schema):
    content: str | None = Field(None, min_length=1)
    enabled: bool | None = None
    pinned: bool | None = None
    valid_until: datetime | None = None
    clear_valid_until: bool = False


class Page(Schema):
    count: int
    limit: int
    offset: int


class SourcePage(Page):
    items: list[SourceOut]


class ChunkPage(Page):
    items: list[ChunkOut]


# --- Answers ------------------------------------------------------------------------------------


class AskIn(Schema):
    question: str = Field(description="The question, in Japanese, Chinese or English.")
    top_k: int | None = Field(None, description="Passages to retrieve, 1–20 (KIOKU_ASK_TOP_K).")
    filters: dict = Field(
        default_factory=dict, description="The search filters (see POST /search)."
    )


class AnswerSourceOut(Schema):
    number: int = Field(description="The [n] used in the answer text.")
    chunk_id: int | None
    source_id: int
    source_title: str
    quoted_text: str
    score: float
    vector_score: float | None
    keyword_score: float | None
    cited: bool

    @staticmethod
    def resolve_number(obj) -> int:
        return obj.rank


class AnswerOut(Schema):
    id: int
    question: str
    answer: str
    outcome: str = Field(description="answered, no_relevant, index_not_built or failed")
    mode: str = Field(description="online (language model) or offline (extractive)")
    offline: bool
    model: str
    language: str
    top_k: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    error_code: str
    feedback: str = Field(description="'', helpful or not_helpful")
    feedback_comment: str
    created_at: datetime
    citations: list[AnswerSourceOut] = Field(description="The sources the answer cites.")
    sources: list[AnswerSourceOut] = Field(description="Every passage retrieved, in rank order.")

    @staticmethod
    def resolve_offline(obj) -> bool:
        return obj.mode == "offline"

    @staticmethod
    def resolve_citations(obj) -> list:
        return [source for source in obj.sources.all() if source.cited]

    @staticmethod
    def resolve_sources(obj) -> list:
        return list(obj.sources.all())


class FeedbackIn(Schema):
    helpful: bool
    comment: str = Field("", max_length=2000)
