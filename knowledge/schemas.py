from datetime import datetime, timedelta
from typing import Any

from ninja import Field, Schema
from pydantic import StrictBool

from core.pagination import BIGINT_MAX, PageOut
from core.schemas import JsonDateTime, JsonFloat, JsonInt
from knowledge.models import Answer, AnswerSource, KnowledgeSource, SourceStatus, SourceType

# The rules of a question or search query, stated in the schema; the services enforce them with
# their own codes (ASK_EMPTY_QUESTION, SEARCH_EMPTY_QUERY, SEARCH_QUERY_TOO_LONG): not blank, at
# most KIOKU_SEARCH_MAX_QUERY_CHARS's default.
QUERY_RULE = {"minLength": 1, "maxLength": 2000, "pattern": r"\S"}


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
    fetch_interval_minutes: JsonInt | None = Field(None, ge=5, le=60 * 24 * 365)


class SourcePatchIn(Schema):
    title: str | None = Field(None, min_length=1, max_length=500)
    source_type: SourceType | None = None
    metadata: dict | None = None
    replace_metadata: StrictBool = False
    enabled: StrictBool | None = None
    fetch_interval_minutes: JsonInt | None = Field(None, ge=5, le=60 * 24 * 365)


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
    def resolve_chunk_count(obj: KnowledgeSource) -> int:
        return obj.n_chunks if hasattr(obj, "n_chunks") else obj.chunks.count()

    @staticmethod
    def resolve_embedded_count(obj: KnowledgeSource) -> int:
        if hasattr(obj, "n_embedded"):
            return obj.n_embedded
        return obj.chunks.filter(embedding_status="done").count()

    @staticmethod
    def resolve_fetch_interval_minutes(obj: KnowledgeSource) -> int | None:
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
    feedback_boost: float = Field(
        description="Outcome boost: the chunk's feedback signals not reverted, summed and bounded."
    )
    valid_until: datetime | None
    embedding_status: str
    embedding_model: str
    embedded_at: datetime | None


class ChunkPatchIn(Schema):
    content: str | None = Field(None, min_length=1)
    enabled: StrictBool | None = None
    pinned: StrictBool | None = None
    valid_until: JsonDateTime | None = None
    clear_valid_until: StrictBool = False


class SourcePage(PageOut):
    items: list[SourceOut]


class ChunkPage(PageOut):
    items: list[ChunkOut]


# --- Answers ------------------------------------------------------------------------------------


def filters_schema(schema: dict[str, Any]) -> None:
    """The filters knowledge.search.filters.parse_filters accepts, stated in the schema (it keeps
    enforcing them with SEARCH_INVALID_FILTER). Metadata keys come from
    KIOKU_SEARCH_METADATA_FILTERS, read when the schema is generated."""
    from django.conf import settings

    source_type = {"type": "string", "enum": list(SourceType.values)}
    source_id = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
    # "" is left out like null.
    moment = {
        "type": "string",
        "anyOf": [{"format": "date"}, {"format": "date-time"}, {"maxLength": 0}],
    }
    label = {"type": "string", "maxLength": 200}
    # [] is left out like null.
    plain = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}
    properties = {
        # One value or a list, under either name (parse_filters reads them alike).
        **dict.fromkeys(
            ("source_type", "source_types"),
            {"anyOf": [source_type, {"type": "array", "items": source_type}]},
        ),
        **dict.fromkeys(
            ("source_id", "source_ids"),
            {"anyOf": [source_id, {"type": "array", "items": source_id}]},
        ),
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": dict.fromkeys(settings.KIOKU_SEARCH_METADATA_FILTERS, plain),
        },
        **dict.fromkeys(("created_from", "created_to", "fetched_from", "fetched_to"), moment),
        "channel": label,
        "user": label,
    }
    # A filter given as null is left out (parse_filters skips it).
    schema.update(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {"anyOf": [rule, {"type": "null"}]} for name, rule in properties.items()
            },
        }
    )


class AskIn(Schema):
    question: str = Field(
        max_length=QUERY_RULE["maxLength"],  # it is searched: a longer one cannot run
        description="The question, in Japanese, Chinese or English.",
        json_schema_extra=QUERY_RULE,
    )
    top_k: JsonInt | None = Field(
        None,
        description="Passages to retrieve, 1–20 (KIOKU_ASK_TOP_K).",
        json_schema_extra={"minimum": 1, "maximum": 20},
    )
    filters: dict = Field(
        default_factory=dict,
        json_schema_extra=filters_schema,
        description="The search filters (see POST /search).",
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
    def resolve_number(obj: AnswerSource) -> int:
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
    def resolve_offline(obj: Answer) -> bool:
        return obj.mode == "offline"

    @staticmethod
    def resolve_citations(obj: Answer) -> list[AnswerSource]:
        return [source for source in obj.sources.all() if source.cited]

    @staticmethod
    def resolve_sources(obj: Answer) -> list[AnswerSource]:
        return list(obj.sources.all())


class FeedbackIn(Schema):
    helpful: StrictBool
    comment: str = Field("", max_length=2000)


# --- Search ---------------------------------------------------------------------------------------


class SearchIn(Schema):
    query: str = Field(description="What to look for (any language).", json_schema_extra=QUERY_RULE)
    mode: str = Field("hybrid", json_schema_extra={"enum": ["vector", "keyword", "hybrid"]})
    top_k: JsonInt = Field(10, json_schema_extra={"minimum": 1, "maximum": 100})
    filters: dict = Field(
        default_factory=dict,
        json_schema_extra=filters_schema,
        description=(
            "source_type(s), source_id(s), metadata {key: value} for keys in "
            "KIOKU_SEARCH_METADATA_FILTERS, created_from/created_to, fetched_from/fetched_to "
            "(ISO dates), channel, user (session chunks)."
        ),
    )
    min_similarity: JsonFloat | None = Field(
        None,
        description="Vector similarity threshold (−1…1).",
        json_schema_extra={"minimum": -1, "maximum": 1},
    )
    rerank: StrictBool | None = Field(
        None,
        description=(
            "Order the fused candidates with the configured reranker (KIOKU_RERANKER). Absent or "
            "null: when one is configured; true: 409 SEARCH_RERANKER_NOT_CONFIGURED without one; "
            "false: never."
        ),
    )


class SearchHitOut(Schema):
    chunk_id: int
    content: str
    snippet: str = Field(description="Safe HTML: escaped text with matches in <mark>.")
    source_id: int
    source_title: str
    source_type: str
    source_uri: str
    location: dict
    pinned: bool
    feedback_boost: float = Field(description="The chunk's outcome boost (a share is in score).")
    score: float
    vector_rank: int | None
    vector_score: float | None
    keyword_rank: int | None
    keyword_score: float | None
    rerank_score: float | None = Field(
        description="The reranker's relevance score, when a reranker ordered the hits."
    )


class SearchOut(Schema):
    query: str
    mode: str
    top_k: int
    model: str
    offline: bool
    degraded: bool = Field(
        description="Something failed (the embedding provider, the reranker): the hits are the "
        "best of what remained, degraded_reason says what."
    )
    degraded_reason: str
    reranker: str = Field(
        description='The reranker that ordered the hits ("http:<model>", "llm:<model>"), or "" '
        "when none did."
    )
    took_ms: float
    hits: list[SearchHitOut]


# --- Index and dead letters -----------------------------------------------------------------------


class IndexSourceCountsOut(Schema):
    total: int
    by_status: dict[str, int]


class IndexChunkCountsOut(Schema):
    total: int
    enabled: int = Field(description="Chunks search can use: enabled, of an enabled source.")
    enabled_embedded: int = Field(description="Of those, embedded with the current model.")


class IndexThroughputOut(Schema):
    chunks: int
    per_minute: float


class IndexPipelineOut(Schema):
    paused: bool
    reason: str
    paused_until: datetime | None
    state: str = Field(description='"running", or "blocked: <reason>" while paused.')


class IndexSizeOut(Schema):
    bytes: int | None = Field(description="None when the index is missing (bulk import).")
    pretty: str


class IndexSizesOut(Schema):
    table: IndexSizeOut
    hnsw_index: IndexSizeOut
    gin_index: IndexSizeOut


class IndexGraphOut(Schema):
    m: int
    ef_construction: int


class IndexGraphStatusOut(Schema):
    built: IndexGraphOut | None = Field(
        description="The HNSW graph the active vector index was built with; null while missing."
    )
    configured: IndexGraphOut = Field(
        description="What KIOKU_HNSW_M and KIOKU_HNSW_EF_CONSTRUCTION ask for."
    )
    rebuild_needed: bool = Field(
        description="A vector index was built with another graph: `manage.py "
        "vector_index_rebuild` rebuilds it while search goes on."
    )


class IndexSpaceOut(Schema):
    model: str
    dimensions: int


class IndexActiveSpaceOut(IndexSpaceOut):
    slot: int = Field(description="Vector slot search reads (1: `embedding`, 2: `embedding_alt`).")
    index: str = Field(description="Its HNSW index.")


class IndexSwitchProgressOut(IndexSpaceOut):
    started_at: datetime | None
    queued: bool = Field(description="Every row lacking a new vector has been queued.")
    embedded: int = Field(description="Usable chunks with a vector of the new model.")
    total: int
    progress: float


class IndexSpacesOut(Schema):
    active: IndexActiveSpaceOut = Field(description="What search reads and embeds queries with.")
    configured: IndexSpaceOut = Field(description="What the settings ask for.")
    switch: IndexSwitchProgressOut | None = Field(description="A model switch in progress.")
    switch_needed: bool = Field(
        description="The settings ask for another model or size: start a switch "
        "(POST /index/switch or `manage.py reembed`); until then search keeps the active one."
    )
    switched_at: datetime | None
    retiring: str | None = Field(description="Old vectors still being cleared after a switch.")


class IndexStatusOut(Schema):
    sources: IndexSourceCountsOut
    chunks: IndexChunkCountsOut
    embedded: int = Field(description="Chunks embedded with the current model.")
    embedded_other_model: int = Field(description="Chunks embedded by another model: owed again.")
    pending: int
    dead_letters: int
    model: str = Field(description="Model of the vectors search reads (the active space).")
    dimensions: int
    offline: bool
    space: IndexSpacesOut
    last_updated: datetime | None = Field(description="Latest fetch of any source.")
    available: bool = Field(description="At least one chunk is embedded with the current model.")
    throughput_last_hour: IndexThroughputOut
    pipeline: IndexPipelineOut
    sizes: IndexSizesOut
    graph: IndexGraphStatusOut
    row_alert: int
    warning: str | None
    progress: float = Field(description="Percent of usable chunks embedded with the current model.")


class IndexBuildOut(Schema):
    documents: int
    entries: int
    duration_ms: int


class IndexClearOut(Schema):
    cleared: int


class IndexSwitchOut(Schema):
    outcome: str = Field(description='"current", "started", "switching" or "completed".')
    message: str
    active: str
    target: str | None
    queued: int


class DeadLetterOut(Schema):
    id: int
    source_id: int
    ordinal: int
    content: str
    attempts: int = Field(alias="embedding_attempts")
    last_error: str = Field(alias="embedding_last_error")
    errors: list[dict] = Field(alias="embedding_errors")


class DeadLetterPage(PageOut):
    items: list[DeadLetterOut]


class DeadLetterRetryIn(Schema):
    ids: list[JsonInt] | None = Field(
        None, description="Only these chunks (default: every dead letter)."
    )


class DeadLetterRetryOut(Schema):
    queued: int
