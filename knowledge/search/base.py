"""What the search modules share: the modes, the error, filters and scope, hits and results."""

from dataclasses import dataclass, field
from datetime import datetime

from core.errors import ApiError
from knowledge.errors import SEARCH_INVALID_TOP_K

MODES = ("vector", "keyword", "hybrid")


class SearchError(ApiError):
    """A search the caller must change (empty query, bad filter…) or that cannot run now."""


@dataclass(frozen=True)
class SearchFilters:
    source_types: tuple[str, ...] = ()
    source_ids: tuple[int, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    fetched_from: datetime | None = None
    fetched_to: datetime | None = None
    channel: str | None = None
    user: str | None = None

    def is_empty(self) -> bool:
        return self == SearchFilters()


@dataclass
class SearchHit:
    chunk_id: int
    content: str
    snippet: str  # safe HTML: everything escaped, matches wrapped in <mark>
    source_id: int
    source_title: str
    source_type: str
    source_uri: str
    location: dict
    pinned: bool
    score: float
    feedback_boost: float = 0.0  # the chunk's outcome boost (knowledge/feedback.py)
    vector_rank: int | None = None
    vector_score: float | None = None
    keyword_rank: int | None = None
    keyword_score: float | None = None
    rerank_score: float | None = None  # the reranker's relevance, when one ordered the hits


@dataclass
class SearchResult:
    query: str
    mode: str
    top_k: int
    hits: list[SearchHit]
    model: str
    offline: bool
    took_ms: float
    degraded: bool = False  # something failed and the hits are the best of what remained
    degraded_reason: str = ""
    keyword_only: bool = False  # hybrid lost its vector leg: the hits are the keyword list
    filters: dict = field(default_factory=dict)
    reranker: str = ""  # which reranker ordered the hits ("http:<model>", "llm:<model>"); "" none


def validate_top_k(
    top_k: object,
    *,
    maximum: int = 100,
    error: type[ApiError] = SearchError,
    code: str = SEARCH_INVALID_TOP_K,
) -> int:
    """The one top_k rule (an integer from 1 to `maximum`), for search (100) and answers (20)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= maximum:
        raise error(
            code,
            f"top_k must be an integer from 1 to {maximum}.",
            details={"top_k": top_k},
        )
    return top_k


@dataclass(frozen=True)
class SearchScope:
    """Which chunks a search may return: every filter is a property of the source, so filters are
    resolved to source ids first. PostgreSQL can estimate `source_id = ANY(ids)` from its
    statistics (it cannot estimate a JSONB containment), which is what lets the vector query pick
    between the HNSW index and an exact scan (see `vector_search`)."""

    source_ids: tuple[int, ...] | None = None  # None: no filter

    @property
    def is_empty(self) -> bool:
        return self.source_ids is not None and not self.source_ids


@dataclass
class RankedRow:
    chunk_id: int
    row: tuple
    score: float
