"""The keyword leg: PostgreSQL full-text search on the chunk's tsvector, in two tiers."""

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings

from core.replicas import read_connection
from core.statements import Statement, fetch_statements
from knowledge.search.base import RankedRow, SearchScope
from knowledge.search.filters import scope_where
from knowledge.search.sql import CHUNK, SELECT_COLUMNS, SOURCE
from knowledge.text import CJK_RUN, WORD, WORD_PART, cjk_bigrams, normalize_text

STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it my of on or our so that the "
    "this to was we what when where which who why will with you your".split()
)


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


def _is_single_letter(word: str) -> bool:
    return len(word) == 1 and word.isalpha()


def build_keyword_query(query: str) -> KeywordQuery | None:
    """Turn user text into tsquery text (later bound as a parameter, never spliced into SQL)."""
    text = normalize_text(query).lower()
    terms: list[tuple[str, str | None]] = []
    plain_words: list[str | None] = []  # per term: its one lexeme, if a plain word
    highlight: list[str] = []
    for run in CJK_RUN.findall(text):
        terms.append((" & ".join(_quote(b) for b in sorted(set(cjk_bigrams(run)))), run))
        plain_words.append(None)
        highlight.append(run)
    latin = CJK_RUN.sub(" ", text)
    words = WORD.findall(latin)
    # A lone letter (the "t" of "won't", the "s" of "lock's") matches nearly every chunk and
    # would mark every such letter in the snippets: a term only when it is the whole query.
    kept = [w for w in words if not _is_single_letter(w)] or ([] if terms else words)
    meaningful = [w for w in kept if w not in STOPWORDS] or kept
    for word in dict.fromkeys(meaningful):
        parts = WORD_PART.findall(word)
        if len(parts) > 1:
            # An identifier: the parser splits "e-21" into 'e' and '-21'; match them as a phrase.
            lexemes = _parser_lexemes(word)
            terms.append((" <-> ".join(_quote(x) for x in lexemes), None))
            plain_words.append(None)
        else:
            terms.append((_quote(word), None))
            plain_words.append(word)
        if not _is_single_letter(word):
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
    with read_connection().cursor() as cursor:
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
    with read_connection().cursor() as cursor:
        cursor.execute(
            "SELECT lexemes FROM ts_debug('simple', %s) WHERE lexemes IS NOT NULL", [word]
        )
        lexemes = tuple(lexeme for (found,) in cursor.fetchall() for lexeme in found)
    return lexemes or (word,)


def keyword_search(
    keyword: KeywordQuery, *, limit: int, scope: SearchScope, enough: int | None = None
) -> list[RankedRow]:
    """Chunks that hold every term first, then chunks that hold some of them (see
    `keyword_statement`)."""
    if scope.is_empty:
        return []
    statement = keyword_statement(keyword, limit=limit, scope=scope, enough=enough)
    with read_connection().cursor() as cursor:
        return keyword_rows(fetch_statements(cursor, [statement])[0])


def keyword_rows(rows: list[tuple]) -> list[RankedRow]:
    """The rows of a `keyword_statement`, ranked by `ts_rank` within their tier."""
    return [RankedRow(row[0], row[:-1], float(row[-1])) for row in rows]


class _TierMatch(NamedTuple):
    index_query: str  # the tsquery the GIN index answers
    checks: list[str]  # SQL conditions a candidate must also meet (its CJK runs present)
    check_params: list  # their parameters


def keyword_statement(
    keyword: KeywordQuery, *, limit: int, scope: SearchScope, enough: int | None = None
) -> Statement:
    """The query for at most `limit` chunks: those holding every term, then, when they are fewer
    than `enough` (default: `limit`), those holding some of them. `scope` must not be empty.

    Ranking costs a heap read and a `ts_rank` per candidate, so each tier ranks at most
    KIOKU_SEARCH_KEYWORD_CANDIDATES of its matches: a query made of common words would otherwise
    rank tens of thousands of rows (300 ms measured on 100,000 chunks) to show ten. Chunks that
    hold every term rank above those holding only some, as in most search engines.

    Both tiers are one statement: the second tier's scan sits under a condition on the first
    tier's count that PostgreSQL evaluates once, before it (a one-time filter), so it is not
    run when the first tier found enough. Hybrid search asks each leg for more rows than it
    shows (to fuse them) but needs the weaker some-terms matches only when every-term matches
    cannot fill what it shows. As a second query, that tier cost a round trip on 40 % of
    hybrid searches (BENCHMARKS.md).
    """
    enough = limit if enough is None else enough
    scope_clauses, scope_params = scope_where(scope)
    candidates = max(settings.KIOKU_SEARCH_KEYWORD_CANDIDATES, limit)
    every_sql, every_params = _tier_sql(
        _every_term_match(keyword), scope_clauses, scope_params, candidates
    )
    ctes = [
        f"every_candidates AS MATERIALIZED ({every_sql})",
        """every_best AS MATERIALIZED (
            SELECT id, ts_rank(search_vector, to_tsquery('simple', %s)) AS rank, 1 AS tier
            FROM every_candidates
            ORDER BY rank DESC, id
            LIMIT %s
        )""",
    ]
    params = [*every_params, keyword.tsquery, limit]
    best = "SELECT * FROM every_best"
    if len(keyword.terms) > 1:
        some_sql, some_params = _tier_sql(
            _some_term_match(keyword),
            [
                *scope_clauses,
                "(SELECT count(*) FROM every_best) < %s",
                "c.id NOT IN (SELECT id FROM every_best)",
            ],
            [*scope_params, enough],
            candidates,
        )
        ctes += [
            f"some_candidates AS MATERIALIZED ({some_sql})",
            """some_best AS (
                SELECT id, ts_rank(search_vector, to_tsquery('simple', %s)) AS rank, 2 AS tier
                FROM some_candidates
                ORDER BY rank DESC, id
                LIMIT %s - (SELECT count(*) FROM every_best)
            )""",
        ]
        params += [*some_params, keyword.tsquery, limit]
        best += " UNION ALL SELECT * FROM some_best"
    ctes.append(f"best AS ({best})")
    # Only ids and tsvectors are materialized and ranked; the shown columns are read for the
    # `limit` best ones.
    sql = f"""
        WITH {", ".join(ctes)}
        SELECT {SELECT_COLUMNS}, best.rank
        FROM best JOIN {CHUNK} c ON c.id = best.id JOIN {SOURCE} s ON s.id = c.source_id
        ORDER BY best.tier, best.rank DESC, c.id
    """
    # With LIMIT over thousands of estimated matches the planner picks a sequential scan that
    # expects to meet the first rows early; the matches are spread over the table, so it reads
    # most of it (70 ms measured). The GIN bitmap scan is bounded by the matches.
    return Statement(sql, params, {"enable_seqscan": "off"})


def _tier_sql(
    match: _TierMatch, clauses: list[str], clause_params: list, candidates: int
) -> tuple[str, list]:
    """A tier's candidates: at most `candidates` matching chunks (ids and tsvectors)."""
    sql = f"""
            SELECT c.id, c.search_vector
            FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
            WHERE c.search_vector @@ to_tsquery('simple', %s)
              AND {" AND ".join([*match.checks, *clauses])}
            LIMIT %s
    """
    return sql, [match.index_query, *match.check_params, *clause_params, candidates]


def _every_term_match(keyword: KeywordQuery) -> _TierMatch:
    """Every term must match; pg_bigm's recheck: the bigrams matched, now require each CJK run
    itself."""
    runs = [recheck for _, recheck in keyword.terms if recheck is not None]
    return _TierMatch(
        index_query=" & ".join(f"({term})" for term, _ in keyword.terms),
        checks=["strpos(lower(c.content), %s) > 0" for _ in runs],
        check_params=list(runs),
    )


def _some_term_match(keyword: KeywordQuery) -> _TierMatch:
    """Some term must match. Words found in a large share of the chunks are left out of this
    disjunction when rarer terms exist ("E-21 plate": the chunks with E-21, not the 40 %
    holding "plate"): they say little, and their posting lists are what costs."""
    chosen = [
        keyword.terms[i]
        for i in keyword.rarer_terms(
            lexeme_shares(), common=settings.KIOKU_SEARCH_COMMON_TERM_SHARE
        )
    ]
    index_query = " | ".join(f"({term})" for term, _ in chosen)
    if not any(recheck is not None for _, recheck in chosen):
        return _TierMatch(index_query, checks=[], check_params=[])
    # A CJK term only counts with its run present. ts_match_vq is the function behind @@: the
    # planner keeps it as a filter on the one index scan instead of splitting the OR into a
    # bitmap scan per term.
    alternatives = []
    check_params: list = []
    for term, recheck in chosen:
        alternatives.append(
            "ts_match_vq(c.search_vector, to_tsquery('simple', %s))"
            + ("" if recheck is None else " AND strpos(lower(c.content), %s) > 0")
        )
        check_params.extend([term] if recheck is None else [term, recheck])
    checks = ["(" + " OR ".join(f"({a})" for a in alternatives) + ")"]
    return _TierMatch(index_query, checks=checks, check_params=check_params)
