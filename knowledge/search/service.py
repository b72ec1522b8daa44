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

No user text reaches SQL except as bound parameters; filter keys come from an allow-list.
"""

import functools
import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils.dateparse import parse_date, parse_datetime

from core.errors import ApiError
from knowledge.embed.providers import LocalHashingEmbeddingProvider, ProviderError
from knowledge.embed.spaces import VectorSpace, embedding_provider_for, space_state
from knowledge.ingest.parsers import normalize_text
from knowledge.models import (
    KnowledgeChunk,
    KnowledgeSource,
    SourceType,
    searchable_chunk_sql,
    searchable_source_sql,
)
from knowledge.search import parallel_reads

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


def validate_top_k(top_k, *, maximum: int = 100, error: type[ApiError] = SearchError) -> int:
    """The seed's top_k rule (an integer from 1 to `maximum`), for search and for answers."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= maximum:
        raise error(
            "VECTOR_INDEX_INVALID_TOP_K",
            f"top_k must be an integer from 1 to {maximum}.",
            details={"top_k": top_k},
        )
    return top_k


# --- SQL pieces --------------------------------------------------------------------------------

CHUNK = KnowledgeChunk._meta.db_table
SOURCE = KnowledgeSource._meta.db_table
SELECT_COLUMNS = (
    "c.id, c.content, c.location, c.pinned, s.id AS source_id, s.title, s.source_type, s.uri"
)


@dataclass(frozen=True)
class SearchScope:
    """Which chunks a search may return: every filter is a property of the source, so filters are
    resolved to source ids first. PostgreSQL can estimate `source_id = ANY(ids)` from its
    statistics (it cannot estimate a JSONB containment), which is what lets the vector query pick
    between the HNSW index and an exact scan (see `_vector_search`)."""

    source_ids: tuple[int, ...] | None = None  # None: no filter

    @property
    def is_empty(self) -> bool:
        return self.source_ids is not None and not self.source_ids


def resolve_scope(filters: SearchFilters) -> SearchScope:
    if filters.is_empty():
        return SearchScope()
    clauses = [searchable_source_sql(SOURCE)]
    params: list = []
    if filters.source_types:
        clauses.append("source_type = ANY(%s)")
        params.append(list(filters.source_types))
    if filters.source_ids:
        clauses.append("id = ANY(%s)")
        params.append(list(filters.source_ids))
    for key, value in filters.metadata:
        # Matches a plain value and a list containing it ("brand": "Kagiya", "models": [...]).
        clauses.append("metadata -> %s @> to_jsonb(%s::text)")
        params.extend([key, value])
    for name, column, op in (
        ("created_from", "created_at", ">="),
        ("created_to", "created_at", "<="),
        ("fetched_from", "fetched_at", ">="),
        ("fetched_to", "fetched_at", "<="),
    ):
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if filters.channel:
        clauses.append("metadata ->> 'channel' = %s")
        params.append(filters.channel)
    if filters.user:
        clauses.append("metadata -> 'participants' ? %s")
        params.append(filters.user)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {SOURCE} WHERE {' AND '.join(clauses)} ORDER BY id", params)
        return SearchScope(tuple(row[0] for row in cursor.fetchall()))


def _where(scope: SearchScope) -> tuple[list[str], list]:
    """Conditions every search applies: searchable chunks of searchable sources in scope."""
    clauses = [searchable_chunk_sql("c", "s")]
    params: list = []
    if scope.source_ids is not None:
        clauses.append("c.source_id = ANY(%s)")
        params.append(list(scope.source_ids))
    return clauses, params


@dataclass
class _Ranked:
    chunk_id: int
    row: tuple
    score: float


def _vector_search(
    vector: list[float],
    *,
    space: VectorSpace,
    limit: int,
    scope: SearchScope,
    min_similarity: float | None,
) -> list[_Ranked]:
    """Nearest chunks by cosine distance.

    Unfiltered, and when the filter leaves many rows, the HNSW index answers with pgvector's
    iterative scan (relaxed order, re-sorted outside the materialized CTE as pgvector
    documents). When the filter leaves at most KIOKU_SEARCH_EXACT_MAX_ROWS rows the distance is
    computed for each of them instead: an HNSW walk that must skip most of the graph to find
    rows of a small, distant subset returns full but inexact results (recall 0.67 measured),
    while an exact scan of a few thousand rows is both exact and cheap.
    """
    if scope.is_empty:
        return []
    clauses, params = _where(scope)
    clauses += [f"c.{space.column} IS NOT NULL", f"c.{space.model_column} = %s"]
    params.append(space.model)
    literal = "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
    dims = space.dimensions
    threshold = ""
    outer_params: list = []
    if min_similarity is not None:
        threshold = "WHERE 1 - distance >= %s"
        outer_params.append(min_similarity)
    exact = scope.source_ids is not None and _rows_at_most(
        scope, settings.KIOKU_SEARCH_EXACT_MAX_ROWS
    )
    # ORDER BY the output column: the 16 KB vector literal is sent and parsed once, and the
    # planner still matches the HNSW operator. The slot is cast exactly as its index is defined.
    # Equal distances are ranked by id, not by where the rows happen to lie on disk.
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT {SELECT_COLUMNS}, {space.cast("c")} <=> %s::halfvec({dims}) AS distance
            FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
            WHERE {" AND ".join(clauses)}
            ORDER BY distance
            LIMIT %s
        )
        SELECT * FROM nearest {threshold} ORDER BY distance, id
    """
    settings_for_query = {
        "hnsw.ef_search": str(ef_search_for(limit)),
        "hnsw.iterative_scan": "relaxed_order",
        "enable_indexscan": "off" if exact else "on",
    }
    with connection.cursor() as cursor:
        rows = _fetch_after_settings(
            cursor, settings_for_query, sql, [literal, *params, limit, *outer_params]
        )
    return [_Ranked(row[0], row[:-1], 1.0 - float(row[-1])) for row in rows]


def _rows_at_most(scope: SearchScope, ceiling: int) -> bool:
    """Whether the sources in scope hold at most `ceiling` chunks (counted on the
    (source, ordinal) index, stopping at ceiling + 1)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {CHUNK} WHERE source_id = ANY(%s) LIMIT %s) t",
            [list(scope.source_ids or ()), ceiling + 1],
        )
        return cursor.fetchone()[0] <= ceiling


def hybrid_candidates(top_k: int) -> int:
    """Rows each leg of a hybrid search contributes to the fusion."""
    return max(top_k * 2, 20)


def _fetch_after_settings(cursor, values: dict[str, str], sql: str, params: list) -> list[tuple]:
    """Run `sql` under transaction-local settings, in one round trip: the settings and the
    query are sent as one multi-statement string (Django binds parameters client-side), which
    PostgreSQL executes as one implicit transaction, so the settings end with the query. Three
    round trips less than BEGIN, SET LOCAL, query, COMMIT."""
    setting_sql = "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in values) + ";"
    setting_params = [item for pair in values.items() for item in pair]
    # Inside a caller's transaction the local settings would last until it ends: put them back.
    reset_sql = "".join(f"; RESET {name}" for name in values)
    cursor.execute(setting_sql + sql + reset_sql, [*setting_params, *params])
    cursor.nextset()
    return cursor.fetchall()


def split_settings_statement(sql: str, params: list) -> tuple[dict[str, str], str, list]:
    """The parts of a string sent by `_fetch_after_settings`: the settings, the query and its
    parameters (for EXPLAIN in tests and benchmarks). Other statements come back unchanged."""
    if not sql.startswith("SELECT set_config("):
        return {}, sql, list(params)
    head, _, rest = sql.partition(";")
    count = head.count("set_config(")
    values = dict(zip(params[0 : 2 * count : 2], params[1 : 2 * count : 2], strict=True))
    return values, rest.split("; RESET ")[0], list(params)[2 * count :]


def ef_search_for(limit: int) -> int:
    """HNSW candidate list size for a query wanting `limit` rows (≥ limit, ≥ the setting)."""
    return min(1000, max(settings.KIOKU_SEARCH_EF_SEARCH, limit * 2))


@dataclass(frozen=True)
class KeywordQuery:
    tsquery: str  # for the GIN index: any term may match
    terms: list[tuple[str, str | None]]  # (tsquery of one term, CJK run to recheck or None)
    highlight: list[str]  # strings to mark in snippets
    words: list[str | None] = field(default_factory=list)  # per term: its one lexeme, if plain

    def rarer_terms(self, shares: dict[str, float], *, common: float) -> list[int]:
        """Positions of the terms worth a disjunction: all but plain words found in at least
        `common` of the chunks, unless every term is that common (`common` ≥ 1: all terms)."""
        if common >= 1:
            return list(range(len(self.terms)))
        words = self.words or [None] * len(self.terms)
        rare = [i for i, word in enumerate(words) if word is None or shares.get(word, 0) < common]
        return rare or list(range(len(self.terms)))


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def build_keyword_query(query: str) -> KeywordQuery | None:
    """Turn user text into tsquery text (later bound as a parameter, never spliced into SQL)."""
    text = normalize_text(query).lower()
    terms: list[tuple[str, str | None]] = []
    plain_words: list[str | None] = []  # per term: its one lexeme, if a plain word
    highlight: list[str] = []
    for run in CJK_RUN.findall(text):
        if len(run) == 1:
            terms.append((_quote(run), run))
        else:
            bigrams = sorted({run[i : i + 2] for i in range(len(run) - 1)})
            terms.append((" & ".join(_quote(b) for b in bigrams), run))
        plain_words.append(None)
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
            plain_words.append(None)
        else:
            terms.append((_quote(word), None))
            plain_words.append(word)
        highlight.append(word)
    if not terms:
        return None
    return KeywordQuery(
        tsquery=" | ".join(f"({t})" for t, _ in terms),
        terms=terms,
        highlight=highlight,
        words=plain_words,
    )


_shares_lock = threading.Lock()
_shares: tuple[float, dict[str, float]] = (float("-inf"), {})


def lexeme_shares() -> dict[str, float]:
    """Share of chunks holding each of the commonest lexemes, from PostgreSQL's statistics on
    the tsvector column (kept by ANALYZE, which autovacuum and the maintenance schedule run);
    read at most once a minute per process."""
    global _shares
    read_at, shares = _shares
    if time.monotonic() - read_at < 60:
        return shares
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.lexeme, u.share FROM pg_stats s, "
            "unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS u(lexeme, share) "
            "WHERE s.schemaname = current_schema() AND s.tablename = %s "
            "AND s.attname = 'search_vector' AND u.lexeme IS NOT NULL",
            [CHUNK],
        )
        shares = dict(cursor.fetchall())
    with _shares_lock:
        _shares = (time.monotonic(), shares)
    return shares


def lexeme_shares_forget() -> None:
    """Read the statistics again on the next search (after an ANALYZE)."""
    global _shares
    with _shares_lock:
        _shares = (float("-inf"), {})


@functools.lru_cache(maxsize=4096)
def _parser_lexemes(word: str) -> tuple[str, ...]:
    """How PostgreSQL's 'simple' parser splits an identifier (the index holds the same). The
    parser is fixed for a server version, so each process asks once per identifier (E-21,
    KG-300 come back in query after query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexemes FROM ts_debug('simple', %s) WHERE lexemes IS NOT NULL", [word]
        )
        lexemes = tuple(lexeme for (found,) in cursor.fetchall() for lexeme in found)
    return lexemes or (word,)


def _keyword_search(keyword: KeywordQuery, *, limit: int, scope: SearchScope) -> list[_Ranked]:
    """Chunks that hold every term first, then chunks that hold some of them.

    Ranking costs a heap read and a `ts_rank` per candidate, so each tier ranks at most
    KIOKU_SEARCH_KEYWORD_CANDIDATES of its matches: a query made of common words would otherwise
    rank tens of thousands of rows (300 ms measured on 100,000 chunks) to show ten. Chunks that
    hold every term rank above those holding only some, as in most search engines.
    """
    if scope.is_empty:
        return []
    every = _keyword_tier(keyword, require_all=True, limit=limit, scope=scope, exclude=[])
    if len(every) >= limit or len(keyword.terms) == 1:
        return every
    some = _keyword_tier(
        keyword,
        require_all=False,
        limit=limit - len(every),
        scope=scope,
        exclude=[hit.chunk_id for hit in every],
    )
    return every + some


def _keyword_tier(
    keyword: KeywordQuery, *, require_all: bool, limit: int, scope: SearchScope, exclude: list[int]
) -> list[_Ranked]:
    clauses, params = _where(scope)
    runs = [recheck for _, recheck in keyword.terms if recheck is not None]
    checks: list[str] = []
    check_params: list = []
    if require_all:
        index_query = " & ".join(f"({term})" for term, _ in keyword.terms)
        # pg_bigm's recheck: the bigrams matched, now require each CJK run itself.
        checks = ["strpos(lower(c.content), %s) > 0" for _ in runs]
        check_params = list(runs)
    else:
        # Some term must match. Words found in a large share of the chunks are left out of
        # this disjunction when rarer terms exist ("E-21 plate": the chunks with E-21, not the
        # 40 % holding "plate"): they say little, and their posting lists are what costs.
        chosen = [
            keyword.terms[i]
            for i in keyword.rarer_terms(
                lexeme_shares(), common=settings.KIOKU_SEARCH_COMMON_TERM_SHARE
            )
        ]
        index_query = " | ".join(f"({term})" for term, _ in chosen)
        if any(recheck is not None for _, recheck in chosen):
            # A CJK term only counts with its run present. ts_match_vq is the function behind
            # @@: the planner keeps it as a filter on the one index scan instead of splitting
            # the OR into a bitmap scan per term.
            alternatives = []
            for term, recheck in chosen:
                alternatives.append(
                    "ts_match_vq(c.search_vector, to_tsquery('simple', %s))"
                    + ("" if recheck is None else " AND strpos(lower(c.content), %s) > 0")
                )
                check_params.extend([term] if recheck is None else [term, recheck])
            checks = ["(" + " OR ".join(f"({a})" for a in alternatives) + ")"]
    if exclude:
        clauses.append("NOT (c.id = ANY(%s))")
        params.append(exclude)
    # Only ids and tsvectors are materialized and ranked; the shown columns are read for the
    # `limit` best ones.
    sql = f"""
        WITH candidates AS MATERIALIZED (
            SELECT c.id, c.search_vector
            FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
            WHERE c.search_vector @@ to_tsquery('simple', %s)
              AND {" AND ".join([*checks, *clauses])}
            LIMIT %s
        ), best AS (
            SELECT id, ts_rank(search_vector, to_tsquery('simple', %s)) AS rank
            FROM candidates
            ORDER BY rank DESC, id
            LIMIT %s
        )
        SELECT {SELECT_COLUMNS}, best.rank
        FROM best JOIN {CHUNK} c ON c.id = best.id JOIN {SOURCE} s ON s.id = c.source_id
        ORDER BY best.rank DESC, c.id
    """
    all_params = [
        index_query,
        *check_params,
        *params,
        max(settings.KIOKU_SEARCH_KEYWORD_CANDIDATES, limit),
        keyword.tsquery,
        limit,
    ]
    with connection.cursor() as cursor:
        # With LIMIT over thousands of estimated matches the planner picks a sequential scan
        # that expects to meet the first rows early; the matches are spread over the table, so
        # it reads most of it (70 ms measured). The GIN bitmap scan is bounded by the matches.
        # Both statements go in one round trip, which PostgreSQL runs as one implicit
        # transaction (so the local setting ends with it).
        rows = _fetch_after_settings(cursor, {"enable_seqscan": "off"}, sql, all_params)
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
    keyword = build_keyword_query(query)
    scope = resolve_scope(parsed)
    candidates = hybrid_candidates(top_k) if mode == "hybrid" else top_k
    keyword_leg = None
    if keyword is not None and mode == "hybrid" and parallel_reads.available():
        # The keyword query runs on a second connection while this thread reads the index
        # state, embeds the query and runs the vector query: hybrid costs about the slower
        # leg, not the sum. Started first: it is the slower leg more often than not.
        keyword_leg = parallel_reads.submit(_keyword_search, keyword, limit=candidates, scope=scope)
    # Queries are embedded in the space the index holds, not necessarily the configured one: a
    # model switch fills another slot and search moves over only once it is complete.
    space = space_state().active
    try:
        provider = embedding_provider_for(space)
    except ProviderError as exc:  # e.g. the index holds OpenAI vectors, but no key is set now
        provider, provider_error = None, exc
    result = SearchResult(
        query=query,
        mode=mode,
        top_k=top_k,
        hits=[],
        model=space.model,
        offline=space.model == LocalHashingEmbeddingProvider.model,
        took_ms=0.0,
    )
    vector_hits: list[_Ranked] = []
    keyword_hits: list[_Ranked] = []
    if mode in ("vector", "hybrid") and not result.degraded:
        try:
            if provider is None:
                raise provider_error
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
                space=space,
                limit=candidates,
                scope=scope,
                min_similarity=min_similarity,
            )
    if keyword_leg is not None:
        keyword_hits = keyword_leg.result()
    elif keyword is not None and mode != "vector":
        keyword_hits = _keyword_search(keyword, limit=candidates, scope=scope)

    if (mode == "keyword" and not keyword_hits) or (mode != "keyword" and not vector_hits):
        # Only an empty answer needs to know why (saves a round trip on every search that finds).
        _check_index(mode, space, result)
    highlight = keyword.highlight if keyword else []
    result.hits = _combine(mode, vector_hits, keyword_hits, top_k, highlight, result.degraded)
    result.took_ms = (time.perf_counter() - started) * 1000
    return result


def _check_index(mode: str, space: VectorSpace, result: SearchResult) -> None:
    """An empty index is an answer of its own, not an empty list that looks like 'no match'."""
    model = space.model
    with connection.cursor() as cursor:
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
    final = {cid: score + (pin_boost if rows[cid][3] else 0.0) for cid, score in scored.items()}
    best = sorted(final, key=lambda cid: (-final[cid], cid))[:top_k]
    # Snippets and locations only for the rows shown (hybrid fuses ~80 candidates for 10 hits).
    hits = []
    for cid in best:
        row = rows[cid]
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
                pinned=bool(row[3]),
                score=final[cid],
                vector_rank=vector_rank.get(cid, (None, None))[0],
                vector_score=vector_rank.get(cid, (None, None))[1],
                keyword_rank=keyword_rank.get(cid, (None, None))[0],
                keyword_score=keyword_rank.get(cid, (None, None))[1],
            )
        )
    return hits
