"""The one search service used by the API, the pages, the CLI and answers.

Modes:
- **vector**: cosine similarity (1 − cosine distance) on the HNSW index, only rows embedded by
  the current model; `hnsw.ef_search` is set per query from top_k and pgvector 0.8's iterative
  index scan keeps filtered queries returning top_k rows.
- **keyword**: PostgreSQL full-text search on the chunk's tsvector (words through the `simple`
  parser, CJK as character bigrams rechecked against the text, identifiers such as `E-21` as
  exact phrases), ranked with `ts_rank`.
- **hybrid** (default): Reciprocal Rank Fusion of both lists. If the embedding provider fails,
  hybrid answers with keyword results and says so (`degraded`).

No user text reaches SQL except as bound parameters; filter keys come from an allow-list.
"""

import html
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils.dateparse import parse_date, parse_datetime

from core.errors import ApiError
from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource, SourceType
from knowledge.parsers import normalize_text
from knowledge.providers import ProviderError, get_embedding_provider

MODES = ("vector", "keyword", "hybrid")
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f"
CJK_RUN = re.compile(f"[{CJK}]+")
# Words, and identifiers such as E-21, KG-300, v2.3.1 or LM5-2308-000001 kept together.
WORD = re.compile(r"[^\W_]+(?:[-_./:][^\W_]+)*")
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it my of on or our so that the "
    "this to was we what when where which who why will with you your".split()
)


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
    vector_rank: int | None = None
    vector_score: float | None = None
    keyword_rank: int | None = None
    keyword_score: float | None = None


@dataclass
class SearchResult:
    query: str
    mode: str
    top_k: int
    hits: list[SearchHit]
    model: str
    offline: bool
    took_ms: float
    degraded: bool = False
    degraded_reason: str = ""
    filters: dict = field(default_factory=dict)


# --- Validation --------------------------------------------------------------------------------


def _invalid_filter(message: str, key: str) -> SearchError:
    return SearchError("SEARCH_INVALID_FILTER", message, details={"filter": key})


def _as_list(value, key: str) -> list:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str | int):
        return [value]
    raise _invalid_filter(f"Filter {key!r} must be a value or a list of values.", key)


def _as_datetime(value, key: str, *, end: bool = False) -> datetime:
    from django.utils import timezone

    if not isinstance(value, str):
        raise _invalid_filter(f"Filter {key!r} must be an ISO date or datetime string.", key)
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        day = moment = None
    if day is not None:
        # A bare date covers the whole day: from its first to its last moment.
        moment = datetime.combine(day, datetime.max.time() if end else datetime.min.time())
    elif moment is None:
        raise _invalid_filter(f"Filter {key!r}: {value!r} is not an ISO date (YYYY-MM-DD).", key)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


def parse_filters(raw: dict | None) -> SearchFilters:
    """Validate filters against the allow-list. Unknown keys or bad values → SEARCH_INVALID_FILTER."""
    if not raw:
        return SearchFilters()
    if not isinstance(raw, dict):
        raise _invalid_filter("Filters must be an object.", "filters")
    allowed_metadata = set(settings.KIOKU_SEARCH_METADATA_FILTERS)
    values: dict = {}
    metadata: list[tuple[str, str]] = []
    for key, value in raw.items():
        if value is None or value == [] or value == "":
            continue
        if key in ("source_type", "source_types"):
            types = _as_list(value, key)
            unknown = [t for t in types if t not in SourceType.values]
            if unknown:
                raise _invalid_filter(
                    f"Unknown source type(s) {unknown}; use {', '.join(SourceType.values)}.", key
                )
            values["source_types"] = tuple(types)
        elif key in ("source_id", "source_ids"):
            ids = _as_list(value, key)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
                raise _invalid_filter(f"Filter {key!r} must hold positive integer ids.", key)
            values["source_ids"] = tuple(ids)
        elif key in ("created_from", "created_to", "fetched_from", "fetched_to"):
            values[key] = _as_datetime(value, key, end=key.endswith("_to"))
        elif key in ("channel", "user"):
            if not isinstance(value, str) or len(value) > 200:
                raise _invalid_filter(
                    f"Filter {key!r} must be a string of at most 200 characters.", key
                )
            values[key] = value
        elif key == "metadata":
            if not isinstance(value, dict):
                raise _invalid_filter("Filter 'metadata' must be an object of key: value.", key)
            for meta_key, meta_value in value.items():
                if meta_key not in allowed_metadata:
                    raise _invalid_filter(
                        f"Metadata key {meta_key!r} cannot be filtered on; allowed: "
                        f"{', '.join(sorted(allowed_metadata)) or 'none'} (KIOKU_SEARCH_METADATA_FILTERS).",
                        f"metadata.{meta_key}",
                    )
                if not isinstance(meta_value, str | int | bool):
                    raise _invalid_filter(f"Metadata filter {meta_key!r} needs a plain value.", key)
                metadata.append(
                    (
                        meta_key,
                        str(meta_value).lower()
                        if isinstance(meta_value, bool)
                        else str(meta_value),
                    )
                )
        else:
            raise _invalid_filter(
                f"Unknown filter {key!r}. Allowed: source_type, source_id, metadata, created_from, "
                "created_to, fetched_from, fetched_to, channel, user.",
                key,
            )
    for start, end in (("created_from", "created_to"), ("fetched_from", "fetched_to")):
        if start in values and end in values and values[start] > values[end]:
            raise _invalid_filter(f"{start} is after {end}.", start)
    return SearchFilters(metadata=tuple(sorted(metadata)), **values)


def validate_top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise SearchError(
            "VECTOR_INDEX_INVALID_TOP_K",
            "top_k must be an integer from 1 to 100.",
            details={"top_k": top_k},
        )
    return top_k


# --- SQL pieces --------------------------------------------------------------------------------

CHUNK = KnowledgeChunk._meta.db_table
SOURCE = KnowledgeSource._meta.db_table
SELECT_COLUMNS = "c.id, c.content, c.location, c.pinned, s.id, s.title, s.source_type, s.uri"


def _where(filters: SearchFilters) -> tuple[list[str], list]:
    """Conditions every search applies: searchable chunks of searchable sources, plus filters."""
    clauses = [
        "c.enabled",
        "s.enabled",
        "s.superseded_by_id IS NULL",
        "(c.valid_until IS NULL OR c.valid_until > now())",
    ]
    params: list = []
    if filters.source_types:
        clauses.append("s.source_type = ANY(%s)")
        params.append(list(filters.source_types))
    if filters.source_ids:
        clauses.append("s.id = ANY(%s)")
        params.append(list(filters.source_ids))
    for key, value in filters.metadata:
        # Matches a plain value and a list containing it ("brand": "Kagiya", "models": [...]).
        clauses.append("s.metadata -> %s @> to_jsonb(%s::text)")
        params.extend([key, value])
    for name, column, op in (
        ("created_from", "s.created_at", ">="),
        ("created_to", "s.created_at", "<="),
        ("fetched_from", "s.fetched_at", ">="),
        ("fetched_to", "s.fetched_at", "<="),
    ):
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if filters.channel:
        clauses.append("s.metadata ->> 'channel' = %s")
        params.append(filters.channel)
    if filters.user:
        clauses.append("s.metadata -> 'participants' ? %s")
        params.append(filters.user)
    return clauses, params


@dataclass
class _Ranked:
    chunk_id: int
    row: tuple
    score: float


def _vector_search(
    vector: list[float],
    *,
    model: str,
    limit: int,
    filters: SearchFilters,
    min_similarity: float | None,
) -> list[_Ranked]:
    clauses, params = _where(filters)
    clauses += ["c.embedding IS NOT NULL", "c.embedding_model = %s"]
    params.append(model)
    literal = "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
    dims = settings.KIOKU_EMBEDDING_DIMENSIONS
    threshold = ""
    outer_params: list = []
    if min_similarity is not None:
        threshold = "WHERE 1 - distance >= %s"
        outer_params.append(min_similarity)
    # relaxed_order: the iterative index scan may return rows slightly out of order, so the
    # materialized CTE is re-sorted outside (as pgvector documents).
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT {SELECT_COLUMNS}, c.embedding <=> %s::halfvec({dims}) AS distance
            FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
            WHERE {" AND ".join(clauses)}
            ORDER BY c.embedding <=> %s::halfvec({dims})
            LIMIT %s
        )
        SELECT * FROM nearest {threshold} ORDER BY distance
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [ef_search_for(limit)])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(sql, [literal, *params, literal, limit, *outer_params])
        rows = cursor.fetchall()
    return [_Ranked(row[0], row[:-1], 1.0 - float(row[-1])) for row in rows]


def ef_search_for(limit: int) -> int:
    """HNSW candidate list size for a query wanting `limit` rows (≥ limit, ≥ the setting)."""
    return min(1000, max(settings.KIOKU_SEARCH_EF_SEARCH, limit * 2))


@dataclass(frozen=True)
class KeywordQuery:
    tsquery: str  # for the GIN index: any term may match
    terms: list[tuple[str, str | None]]  # (tsquery of one term, CJK run to recheck or None)
    highlight: list[str]  # strings to mark in snippets


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def build_keyword_query(query: str) -> KeywordQuery | None:
    """Turn user text into tsquery text (later bound as a parameter, never spliced into SQL)."""
    text = normalize_text(query).lower()
    terms: list[tuple[str, str | None]] = []
    highlight: list[str] = []
    for run in CJK_RUN.findall(text):
        if len(run) == 1:
            terms.append((_quote(run), run))
        else:
            bigrams = sorted({run[i : i + 2] for i in range(len(run) - 1)})
            terms.append((" & ".join(_quote(b) for b in bigrams), run))
        highlight.append(run)
    latin = CJK_RUN.sub(" ", text)
    words = [w for w in WORD.findall(latin)]
    meaningful = [w for w in words if w not in STOPWORDS] or words
    for word in dict.fromkeys(meaningful):
        parts = re.findall(r"[^\W_]+", word)
        if len(parts) > 1:
            # An identifier: the parser splits "e-21" into 'e' and '-21'; match them as a phrase.
            lexemes = _parser_lexemes(word)
            terms.append((" <-> ".join(_quote(x) for x in lexemes), None))
        else:
            terms.append((_quote(word), None))
        highlight.append(word)
    if not terms:
        return None
    return KeywordQuery(
        tsquery=" | ".join(f"({t})" for t, _ in terms), terms=terms, highlight=highlight
    )


def _parser_lexemes(word: str) -> list[str]:
    """How PostgreSQL's 'simple' parser splits an identifier (the index holds the same)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexemes FROM ts_debug('simple', %s) WHERE lexemes IS NOT NULL", [word]
        )
        lexemes = [lexeme for (found,) in cursor.fetchall() for lexeme in found]
    return lexemes or [word]


def _keyword_search(keyword: KeywordQuery, *, limit: int, filters: SearchFilters) -> list[_Ranked]:
    clauses, params = _where(filters)
    term_checks = []
    term_params: list = []
    for term, recheck in keyword.terms:
        if recheck is None:
            term_checks.append("c.search_vector @@ to_tsquery('simple', %s)")
            term_params.append(term)
        else:
            # pg_bigm's recheck: the bigrams matched, now require the run itself.
            term_checks.append(
                "(c.search_vector @@ to_tsquery('simple', %s) AND strpos(lower(c.content), %s) > 0)"
            )
            term_params.extend([term, recheck])
    sql = f"""
        SELECT {SELECT_COLUMNS}, ts_rank(c.search_vector, to_tsquery('simple', %s)) AS rank
        FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
        WHERE c.search_vector @@ to_tsquery('simple', %s)
          AND ({" OR ".join(term_checks)})
          AND {" AND ".join(clauses)}
        ORDER BY rank DESC, c.id
        LIMIT %s
    """
    all_params = [keyword.tsquery, keyword.tsquery, *term_params, *params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        rows = cursor.fetchall()
    return [_Ranked(row[0], row[:-1], float(row[-1])) for row in rows]


# --- Snippets ----------------------------------------------------------------------------------


def highlight_snippet(text: str, terms: list[str], *, width: int = 280) -> str:
    """A window of `text` around the first match, HTML-escaped, with matches in <mark>."""
    lowered = text.lower()
    spans = []
    for term in sorted({t for t in terms if t}, key=len, reverse=True):
        start = 0
        while (found := lowered.find(term, start)) != -1:
            spans.append((found, found + len(term)))
            start = found + len(term)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    first = merged[0][0] if merged else 0
    window_start = max(0, first - width // 3)
    window_end = min(len(text), window_start + width)
    out = ["…" if window_start > 0 else ""]
    cursor = window_start
    for start, end in merged:
        if end <= window_start or start >= window_end:
            continue
        start, end = max(start, window_start), min(end, window_end)
        out.append(html.escape(text[cursor:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        cursor = end
    out.append(html.escape(text[cursor:window_end]))
    if window_end < len(text):
        out.append("…")
    return "".join(out)


def _json(value) -> dict:
    # Django's PostgreSQL backend hands raw-cursor jsonb values over as text.
    if isinstance(value, str):
        return json.loads(value)
    return value or {}


# --- The service -------------------------------------------------------------------------------


def search(
    query: str,
    *,
    mode: str = "hybrid",
    top_k: int = 10,
    filters: dict | SearchFilters | None = None,
    min_similarity: float | None = None,
) -> SearchResult:
    started = time.perf_counter()
    if not isinstance(query, str) or not query.strip():
        raise SearchError("SEARCH_EMPTY_QUERY", "The query is empty: type something to search for.")
    if len(query) > settings.KIOKU_SEARCH_MAX_QUERY_CHARS:
        raise SearchError(
            "SEARCH_QUERY_TOO_LONG",
            f"The query is longer than {settings.KIOKU_SEARCH_MAX_QUERY_CHARS} characters.",
        )
    if mode not in MODES:
        raise SearchError(
            "SEARCH_INVALID_MODE", f"Unknown mode {mode!r}; use vector, keyword or hybrid."
        )
    top_k = validate_top_k(top_k)
    if min_similarity is not None and not (-1.0 <= min_similarity <= 1.0):
        raise SearchError("SEARCH_INVALID_THRESHOLD", "min_similarity must be between -1 and 1.")
    parsed = filters if isinstance(filters, SearchFilters) else parse_filters(filters)
    provider = get_embedding_provider()
    result = SearchResult(
        query=query,
        mode=mode,
        top_k=top_k,
        hits=[],
        model=provider.model,
        offline=provider.is_offline,
        took_ms=0.0,
    )
    _check_index(mode, provider.model, result)

    keyword = build_keyword_query(query)
    candidates = max(top_k * 4, 40) if mode == "hybrid" else top_k
    vector_hits: list[_Ranked] = []
    keyword_hits: list[_Ranked] = []
    if mode in ("vector", "hybrid") and not result.degraded:
        try:
            vector = provider.embed([normalize_text(query)])[0]
        except ProviderError as exc:
            if mode == "vector":
                raise SearchError(
                    "VECTOR_INDEX_EMBEDDING_GENERATION_FAILED",
                    f"Could not embed the query: {exc.message}",
                    status=503,
                ) from exc
            result.degraded = True
            result.degraded_reason = (
                f"The embedding provider failed ({exc.message}); showing keyword results only."
            )
        else:
            vector_hits = _vector_search(
                vector,
                model=provider.model,
                limit=candidates,
                filters=parsed,
                min_similarity=min_similarity,
            )
    if keyword is not None and (mode != "vector"):
        keyword_hits = _keyword_search(keyword, limit=candidates, filters=parsed)

    highlight = keyword.highlight if keyword else []
    result.hits = _combine(mode, vector_hits, keyword_hits, top_k, highlight, result.degraded)
    result.took_ms = (time.perf_counter() - started) * 1000
    return result


def _check_index(mode: str, model: str, result: SearchResult) -> None:
    """An empty index is an answer of its own, not an empty list that looks like 'no match'."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {CHUNK}), "
            f"EXISTS (SELECT 1 FROM {CHUNK} WHERE embedding_status = %s AND embedding_model = %s), "
            f"(SELECT count(*) FROM {CHUNK} WHERE embedding_status = %s)",
            [EmbeddingStatus.DONE, model, EmbeddingStatus.PENDING],
        )
        has_chunks, has_vectors, pending = cursor.fetchone()
    if not has_chunks:
        raise SearchError(
            "VECTOR_INDEX_EMPTY",
            "The knowledge base is empty: ingest documents first (Sources page, API or `manage.py ingest`).",
            status=409,
        )
    if mode != "keyword" and not has_vectors:
        if mode == "vector":
            raise SearchError(
                "VECTOR_INDEX_NOT_AVAILABLE",
                f"No chunk has been embedded with {model} yet ({pending} waiting); try again shortly "
                "or search by keyword.",
                status=409,
                details={"pending": pending},
            )
        result.degraded = True
        result.degraded_reason = (
            f"No embeddings yet ({pending} chunks waiting); showing keyword results only."
        )


def _combine(
    mode: str,
    vector_hits: list[_Ranked],
    keyword_hits: list[_Ranked],
    top_k: int,
    highlight: list[str],
    degraded: bool,
) -> list[SearchHit]:
    rows: dict[int, tuple] = {}
    vector_rank = {hit.chunk_id: (rank, hit.score) for rank, hit in enumerate(vector_hits, 1)}
    keyword_rank = {hit.chunk_id: (rank, hit.score) for rank, hit in enumerate(keyword_hits, 1)}
    for hit in [*vector_hits, *keyword_hits]:
        rows.setdefault(hit.chunk_id, hit.row)
    pin_boost = settings.KIOKU_SEARCH_PIN_BOOST
    if mode == "vector" or (mode == "hybrid" and not keyword_hits and not degraded):
        scored = {cid: score for cid, (_, score) in vector_rank.items()}
    elif mode == "keyword" or degraded:
        scored = {cid: score for cid, (_, score) in keyword_rank.items()}
    else:
        k = settings.KIOKU_SEARCH_RRF_K
        scored = {}
        for ranks in (vector_rank, keyword_rank):
            for cid, (rank, _) in ranks.items():
                scored[cid] = scored.get(cid, 0.0) + 1.0 / (k + rank)
    hits = []
    for cid, score in scored.items():
        row = rows[cid]
        pinned = bool(row[3])
        hits.append(
            SearchHit(
                chunk_id=cid,
                content=row[1],
                snippet=highlight_snippet(row[1], highlight),
                source_id=row[4],
                source_title=row[5],
                source_type=row[6],
                source_uri=row[7],
                location=_json(row[2]),
                pinned=pinned,
                score=score + (pin_boost if pinned else 0.0),
                vector_rank=vector_rank.get(cid, (None, None))[0],
                vector_score=vector_rank.get(cid, (None, None))[1],
                keyword_rank=keyword_rank.get(cid, (None, None))[0],
                keyword_score=keyword_rank.get(cid, (None, None))[1],
            )
        )
    hits.sort(key=lambda hit: (-hit.score, hit.chunk_id))
    return hits[:top_k]
