"""The quality app's API shapes: retrieval tests."""

from datetime import datetime
from typing import Literal

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, StrictBool

from core.pagination import PageOut
from core.schemas import JsonFloat, JsonInt
from knowledge.schemas import QUERY_RULE, filters_schema
from quality.models import RetrievalTest
from quality.retrieval import RETRIEVAL_MAX_TOP_K, RETRIEVAL_MAX_VARIANTS


class RetrievalVariantIn(BaseModel):
    # A plain pydantic model: ninja's Schema reads attributes through a getter that takes null
    # for an object whose fields all have defaults.
    model_config = ConfigDict(extra="forbid")

    mode: Literal["vector", "keyword", "hybrid"] = "hybrid"
    min_similarity: JsonFloat | None = Field(
        None, ge=-1, le=1, description="Vector similarity threshold (−1…1); null: none."
    )
    rerank: StrictBool | None = Field(
        None,
        description="Rerank the hits (null: the search's default). A build whose search has no "
        "reranker answers RETRIEVAL_OPTION_UNAVAILABLE in this column.",
    )
    use_feedback: StrictBool | None = Field(
        None,
        description="Rank with outcome feedback (null: the search's default); "
        "RETRIEVAL_OPTION_UNAVAILABLE in this column where the search has no such option.",
    )


class RetrievalTestIn(Schema):
    query: str = Field(description="What to look for (any language).", json_schema_extra=QUERY_RULE)
    variants: list[RetrievalVariantIn] | None = Field(
        None,
        min_length=1,
        max_length=RETRIEVAL_MAX_VARIANTS,
        description="The settings compared side by side, one column each; null: hybrid, "
        "vector and keyword.",
    )
    top_k: JsonInt = Field(10, ge=1, le=RETRIEVAL_MAX_TOP_K)
    filters: dict = Field(
        default_factory=dict,
        json_schema_extra=filters_schema,
        description="The search filters, shared by every column (see POST /search).",
    )


class RetrievalVariantOut(Schema):
    mode: str
    min_similarity: float | None
    rerank: bool | None = None
    use_feedback: bool | None = None


class RetrievalHitOut(Schema):
    chunk_id: int
    source_id: int
    source_title: str
    source_type: str
    source_uri: str
    location: dict
    pinned: bool
    snippet: str = Field(description="Safe HTML: escaped text with matches in <mark>.")
    score: float = Field(description="The score the mode ranks by (hybrid: fused by rank).")
    vector_rank: int | None
    vector_score: float | None
    keyword_rank: int | None
    keyword_score: float | None


class RetrievalErrorOut(Schema):
    code: str
    message: str
    details: dict
    status: int


class RetrievalColumnOut(Schema):
    label: str
    variant: RetrievalVariantOut
    error: RetrievalErrorOut | None = Field(
        description="Why this variant could not search (its other fields are then empty)."
    )
    hits: list[RetrievalHitOut]
    took_ms: float
    model: str
    offline: bool
    degraded: bool
    degraded_reason: str


class RetrievalTestOut(Schema):
    id: int
    query: str
    channel: str = Field(description="web (the retrieval test page) or api")
    user: str | None = Field(description="Who ran it on the page.")
    api_key: str | None = Field(description="The name of the key that ran it through the API.")
    created_at: datetime
    variants: list[RetrievalVariantOut]
    top_k: int
    filters: dict
    columns: list[RetrievalColumnOut]

    @staticmethod
    def resolve_user(obj: RetrievalTest) -> str | None:
        return obj.user.get_username() if obj.user else None

    @staticmethod
    def resolve_api_key(obj: RetrievalTest) -> str | None:
        return obj.api_key.name if obj.api_key else None

    @staticmethod
    def resolve_variants(obj: RetrievalTest) -> list[dict]:
        return obj.config.get("variants", [])

    @staticmethod
    def resolve_top_k(obj: RetrievalTest) -> int:
        return obj.config.get("top_k", 0)

    @staticmethod
    def resolve_filters(obj: RetrievalTest) -> dict:
        return obj.config.get("filters", {})

    @staticmethod
    def resolve_columns(obj: RetrievalTest) -> list[dict]:
        return obj.results.get("columns", [])


class RetrievalTestPage(PageOut):
    items: list[RetrievalTestOut]
