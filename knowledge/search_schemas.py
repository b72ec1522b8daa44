from ninja import Field, Schema


class SearchIn(Schema):
    query: str = Field(description="What to look for (any language).")
    mode: str = Field("hybrid", description="vector, keyword or hybrid")
    top_k: int = Field(10, description="1–100")
    filters: dict = Field(
        default_factory=dict,
        description=(
            "source_type(s), source_id(s), metadata {key: value} for keys in "
            "KIOKU_SEARCH_METADATA_FILTERS, created_from/created_to, fetched_from/fetched_to "
            "(ISO dates), channel, user (session chunks)."
        ),
    )
    min_similarity: float | None = Field(None, description="Vector similarity threshold (−1…1).")


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
    score: float
    vector_rank: int | None
    vector_score: float | None
    keyword_rank: int | None
    keyword_score: float | None


class SearchOut(Schema):
    query: str
    mode: str
    top_k: int
    model: str
    offline: bool
    degraded: bool
    degraded_reason: str
    took_ms: float
    hits: list[SearchHitOut]
