"""The one search service used by the API, the pages, the CLI and answers.

Modes:
- **vector**: cosine similarity (1 − cosine distance) on the HNSW index of the active embedding
  space (knowledge/embed/spaces.py): the query is embedded by that space's model, and only
  its slot and model are read, so rows of another model never mix in, also during a switch; `hnsw.ef_search` is set per query from top_k and pgvector 0.8's iterative
  index scan keeps filtered queries returning top_k rows.
- **keyword**: PostgreSQL full-text search on the chunk's tsvector (words through the `simple`
  parser, CJK as character bigrams rechecked against the text, identifiers such as `E-21` as
  exact phrases), ranked with `ts_rank`.
- **hybrid** (default): Reciprocal Rank Fusion of both lists. If the embedding provider fails,
  hybrid answers with keyword results and says so (`degraded`).

Pinned chunks and chunks with an outcome boost (knowledge/feedback.py) get a small bonus on every
mode's score (knowledge/search/fusion.py); `use_feedback=False` leaves the latter out.

Reranking (any mode, off by default; search/rerank.py): the fused list is taken
`KIOKU_RERANK_CANDIDATES` long, the configured reranker orders it and it is cut to top_k. A
reranker that fails leaves the fused order and marks the result `degraded`.

No user text reaches SQL except as bound parameters; filter keys come from an allow-list.
"""

import time
from dataclasses import dataclass

from django.conf import settings

from core.replicas import read_connection
from core.statements import Statement
from knowledge.embed.base import ProviderError
from knowledge.embed.spaces import VectorSpace, embedding_provider_for
from knowledge.errors import (
    SEARCH_EMBEDDING_FAILED,
    SEARCH_EMPTY_QUERY,
    SEARCH_INDEX_EMPTY,
    SEARCH_INDEX_NOT_AVAILABLE,
    SEARCH_INVALID_MODE,
    SEARCH_INVALID_THRESHOLD,
    SEARCH_QUERY_TOO_LONG,
    SEARCH_RERANKER_NOT_CONFIGURED,
)
from knowledge.offline import offline_state
from knowledge.search import parallel_reads
from knowledge.search.base import (
    MODES,
    RankedRow,
    SearchError,
    SearchFilters,
    SearchResult,
    SearchScope,
    validate_top_k,
)
from knowledge.search.filters import parse_filters, resolve_scope
from knowledge.search.fusion import hits_fuse, hybrid_candidates
from knowledge.search.keyword import (
    KeywordQuery,
    build_keyword_query,
    keyword_rows,
    keyword_search,
    keyword_statement,
)
from knowledge.search.rerank import Reranker, RerankError, reranker_for_settings
from knowledge.search.sql import CHUNK, fetch_in_active_space
from knowledge.search.vector import vector_rows, vector_statement
from knowledge.text import normalize_text


def chunk_search(
    query: str,
    *,
    mode: str = "hybrid",
    top_k: int = 10,
    filters: dict | SearchFilters | None = None,
    min_similarity: float | None = None,
    rerank: bool | None = None,
    use_feedback: bool = True,
) -> SearchResult:
    """The hits for `query` (see the module docstring). `rerank`: None reranks when a reranker
    is configured (`KIOKU_RERANKER`); True insists (SEARCH_RERANKER_NOT_CONFIGURED without
    one); False never reranks, whatever is configured. `use_feedback=False` ranks without the
    chunks' outcome boosts. Evaluation runs compare both ways of each."""
    started = time.perf_counter()
    top_k = _request_check(query, mode=mode, top_k=top_k, min_similarity=min_similarity)
    reranker = _reranker_or_error(rerank)
    parsed = filters if isinstance(filters, SearchFilters) else parse_filters(filters)
    request = _Request(
        query=query,
        mode=mode,
        top_k=top_k,
        keyword=build_keyword_query(query),
        scope=resolve_scope(parsed),
        # A reranker orders more than it keeps: the fused list is taken longer, then cut.
        fused_k=max(top_k, settings.KIOKU_RERANK_CANDIDATES)
        if isinstance(reranker, Reranker)
        else top_k,
        min_similarity=min_similarity,
    )
    result, vector_hits, keyword_hits = _search(request)
    highlight = request.keyword.highlight if request.keyword else []
    result.hits = hits_fuse(
        mode,
        vector_hits,
        keyword_hits,
        request.fused_k,
        highlight,
        result.keyword_only,
        use_feedback=use_feedback,
    )
    if reranker is not None:
        _rerank(query, reranker, result)
    result.took_ms = (time.perf_counter() - started) * 1000
    return result


@dataclass(frozen=True)
class _Request:
    query: str
    mode: str
    top_k: int
    keyword: KeywordQuery | None
    scope: SearchScope
    fused_k: int  # how many fused hits are kept (top_k, or the reranker's candidates)
    min_similarity: float | None

    @property
    def candidates(self) -> int:
        """Rows each leg returns: hybrid fuses longer lists than it keeps."""
        return hybrid_candidates(self.fused_k) if self.mode == "hybrid" else self.fused_k


@dataclass
class _Plan:
    """What one search sends in the active space it was planned for."""

    result: SearchResult
    statements: list[Statement]
    vector_at: int | None = None  # where each leg's statement is in `statements`
    keyword_at: int | None = None


def _search(request: _Request) -> tuple[SearchResult, list[RankedRow], list[RankedRow]]:
    """The result (hits not fused yet), the vector hits and the keyword hits.

    The vector and keyword queries go in one round trip, with the check that the active
    embedding space is the one this process last saw (`fetch_in_active_space`). Outside a
    transaction, hybrid search sends its keyword query ahead on a second connection
    (knowledge/search/parallel_reads.py) instead: it then runs while this thread embeds the
    query and runs the vector query (p50 5.2–5.6 ms against 6.2–6.6 ms in turn, BENCHMARKS.md).
    """
    mode, scope, limit = request.mode, request.scope, request.candidates
    keyword_wanted = request.keyword is not None and mode != "vector" and not scope.is_empty
    side_leg = None
    if keyword_wanted and mode == "hybrid" and parallel_reads.available():
        side_leg = parallel_reads.submit(
            keyword_search, request.keyword, limit=limit, scope=scope, enough=request.fused_k
        )
    plans: list[_Plan] = []

    def statements_for(space: VectorSpace) -> list[Statement]:
        # Queries are embedded in the space the index holds, not necessarily the configured
        # one: a model switch fills another slot and search moves over only once it is complete.
        plan = _Plan(
            result=SearchResult(
                query=request.query,
                mode=mode,
                top_k=request.top_k,
                hits=[],
                model=space.model,
                offline=offline_state(space=space).search,
                took_ms=0.0,
            ),
            statements=[],
        )
        if mode in ("vector", "hybrid") and not scope.is_empty:
            vector = _query_vector(request.query, space=space, result=plan.result)
            if vector is not None:
                plan.vector_at = len(plan.statements)
                plan.statements.append(
                    vector_statement(
                        vector,
                        space=space,
                        limit=limit,
                        scope=scope,
                        min_similarity=request.min_similarity,
                    )
                )
        if keyword_wanted and side_leg is None:
            plan.keyword_at = len(plan.statements)
            plan.statements.append(
                keyword_statement(request.keyword, limit=limit, scope=scope, enough=request.fused_k)
            )
        plans.append(plan)
        return plan.statements

    with read_connection().cursor() as cursor:
        space, rows = fetch_in_active_space(cursor, statements_for)
    plan = plans[-1]
    vector_hits = vector_rows(rows[plan.vector_at]) if plan.vector_at is not None else []
    keyword_hits = keyword_rows(rows[plan.keyword_at]) if plan.keyword_at is not None else []
    if side_leg is not None:
        keyword_hits = side_leg.result()
    if (mode == "keyword" and not keyword_hits) or (mode != "keyword" and not vector_hits):
        # Only an empty answer needs to know why (saves a round trip on every search that finds).
        _check_index(mode, space, plan.result)
    return plan.result, vector_hits, keyword_hits


def _request_check(query: object, *, mode: str, top_k: object, min_similarity: float | None) -> int:
    """Refuse a search that cannot run (SearchError with a stable code); returns top_k."""
    if not isinstance(query, str) or not query.strip():
        raise SearchError(SEARCH_EMPTY_QUERY, "The query is empty: type something to search for.")
    if len(query) > settings.KIOKU_SEARCH_MAX_QUERY_CHARS:
        raise SearchError(
            SEARCH_QUERY_TOO_LONG,
            f"The query is longer than {settings.KIOKU_SEARCH_MAX_QUERY_CHARS} characters.",
        )
    if mode not in MODES:
        raise SearchError(
            SEARCH_INVALID_MODE, f"Unknown mode {mode!r}; use vector, keyword or hybrid."
        )
    top_k = validate_top_k(top_k)
    if min_similarity is not None and not (-1.0 <= min_similarity <= 1.0):
        raise SearchError(SEARCH_INVALID_THRESHOLD, "min_similarity must be between -1 and 1.")
    return top_k


def _reranker_or_error(rerank: bool | None) -> Reranker | RerankError | None:
    """The reranker this search uses, None for none, or why the configured one cannot run (the
    search goes on without it, degraded)."""
    if rerank is False or (rerank is None and not settings.KIOKU_RERANKER):
        return None
    if not settings.KIOKU_RERANKER:
        raise SearchError(
            SEARCH_RERANKER_NOT_CONFIGURED,
            "Reranking was asked for, but no reranker is configured (KIOKU_RERANKER).",
            status=409,
        )
    try:
        return reranker_for_settings()
    except RerankError as exc:
        return exc


def _rerank(query: str, reranker: Reranker | RerankError, result: SearchResult) -> None:
    """Order `result.hits` by the reranker and cut them to top_k; on failure keep the fused
    order (cut too) and mark the result degraded."""
    try:
        if isinstance(reranker, RerankError):
            raise reranker
        if result.hits:
            result.hits = reranker.rerank(query, result.hits, result.top_k)
            result.reranker = reranker.name
    except RerankError as exc:
        result.hits = result.hits[: result.top_k]
        reason = f"The reranker failed ({exc.message}); showing the fused order."
        result.degraded = True
        result.degraded_reason = " ".join(filter(None, [result.degraded_reason, reason]))


def _query_vector(query: str, *, space: VectorSpace, result: SearchResult) -> list[float] | None:
    """The query embedded in `space`. An embedding failure (or no provider for the space: the
    index holds OpenAI vectors, but no key is set now) fails a vector search; a hybrid one is
    marked degraded on `result` and goes on with keyword hits only."""
    try:
        return embedding_provider_for(space).embed([normalize_text(query)])[0]
    except ProviderError as exc:
        if result.mode == "vector":
            raise SearchError(
                SEARCH_EMBEDDING_FAILED,
                f"Could not embed the query: {exc.message}",
                status=503,
            ) from exc
        result.degraded = result.keyword_only = True
        result.degraded_reason = (
            f"The embedding provider failed ({exc.message}); showing keyword results only."
        )
        return None


def _check_index(mode: str, space: VectorSpace, result: SearchResult) -> None:
    """An empty index is an answer of its own, not an empty list that looks like 'no match'."""
    model = space.model
    with read_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {CHUNK}), "
            f"EXISTS (SELECT 1 FROM {CHUNK} WHERE {space.model_column} = %s)",
            [model],
        )
        has_chunks, has_vectors = cursor.fetchone()
        pending = 0
        if has_chunks and not has_vectors and mode != "keyword":
            cursor.execute(
                f"SELECT count(*) FROM {CHUNK} WHERE embedding_status = 'pending'",
            )
            pending = cursor.fetchone()[0]
    if not has_chunks:
        raise SearchError(
            SEARCH_INDEX_EMPTY,
            "The knowledge base is empty: ingest documents first (Sources page, API or `manage.py ingest`).",
            status=409,
        )
    if mode != "keyword" and not has_vectors:
        if mode == "vector":
            raise SearchError(
                SEARCH_INDEX_NOT_AVAILABLE,
                f"No chunk has been embedded with {model} yet ({pending} waiting); try again shortly "
                "or search by keyword.",
                status=409,
                details={"pending": pending},
            )
        result.degraded = result.keyword_only = True
        result.degraded_reason = (
            f"No embeddings yet ({pending} chunks waiting); showing keyword results only."
        )
