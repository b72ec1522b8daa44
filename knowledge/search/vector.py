"""The vector leg: nearest chunks by cosine distance in the active embedding space."""

from django.conf import settings

from core.replicas import read_connection
from core.statements import Statement
from knowledge.embed.spaces import VectorSpace, halfvec_literal
from knowledge.search.base import RankedRow, SearchScope
from knowledge.search.filters import scope_where
from knowledge.search.sql import CHUNK, SELECT_COLUMNS, SOURCE, fetch_in_active_space


def vector_search(
    vector: list[float],
    *,
    limit: int,
    scope: SearchScope,
    min_similarity: float | None,
) -> tuple[VectorSpace, list[RankedRow]]:
    """The chunks nearest to `vector`, a vector of the active embedding space (returned with
    them), as chunk_search's vector mode reads them (see `vector_statement`)."""

    def statements_for(space: VectorSpace) -> list[Statement]:
        if scope.is_empty:
            return []
        return [
            vector_statement(
                vector, space=space, limit=limit, scope=scope, min_similarity=min_similarity
            )
        ]

    with read_connection().cursor() as cursor:
        space, rows = fetch_in_active_space(cursor, statements_for)
    return space, vector_rows(rows[0]) if rows else []


def vector_rows(rows: list[tuple]) -> list[RankedRow]:
    """The rows of a `vector_statement`, ranked by similarity (1 − cosine distance)."""
    return [RankedRow(row[0], row[:-1], 1.0 - float(row[-1])) for row in rows]


def vector_statement(
    vector: list[float],
    *,
    space: VectorSpace,
    limit: int,
    scope: SearchScope,
    min_similarity: float | None,
) -> Statement:
    """The query for the chunks nearest to `vector` in `scope` (not empty).

    Unfiltered, and when the filter leaves many rows, the HNSW index answers with pgvector's
    iterative scan (relaxed order, re-sorted outside the materialized CTE as pgvector
    documents). When the filter leaves at most KIOKU_SEARCH_EXACT_MAX_ROWS rows the distance is
    computed for each of them instead: an HNSW walk that must skip most of the graph to find
    rows of a small, distant subset returns full but inexact results (recall 0.67 measured),
    while an exact scan of a few thousand rows is both exact and cheap.
    """
    clauses, params = scope_where(scope)
    clauses += [f"c.{space.column} IS NOT NULL", f"c.{space.model_column} = %s"]
    params.append(space.model)
    literal = halfvec_literal(vector)
    dims = space.dimensions
    threshold = ""
    outer_params: list = []
    if min_similarity is not None:
        threshold = "WHERE 1 - nearest.distance >= %s"
        outer_params.append(min_similarity)
    exact = scope.source_ids is not None and _rows_at_most(
        scope, settings.KIOKU_SEARCH_EXACT_MAX_ROWS
    )
    # ORDER BY the output column: the 16 KB vector literal is sent and parsed once, and the
    # planner still matches the HNSW operator. The slot is cast exactly as its index is defined.
    # The ranking carries only ids and distances; the shown columns are read for the rows kept
    # (an exact scan would otherwise carry every row's text through its sort).
    # Equal distances are ranked by id, not by where the rows happen to lie on disk.
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT c.id, {space.cast("c")} <=> %s::halfvec({dims}) AS distance
            FROM {CHUNK} c JOIN {SOURCE} s ON s.id = c.source_id
            WHERE {" AND ".join(clauses)}
            ORDER BY distance
            LIMIT %s
        )
        SELECT {SELECT_COLUMNS}, nearest.distance
        FROM nearest JOIN {CHUNK} c ON c.id = nearest.id JOIN {SOURCE} s ON s.id = c.source_id
        {threshold} ORDER BY nearest.distance, c.id
    """
    settings_for_query = {
        "hnsw.ef_search": str(ef_search_for(limit)),
        "hnsw.iterative_scan": "relaxed_order",
        "enable_indexscan": "off" if exact else "on",
    }
    return Statement(sql, [literal, *params, limit, *outer_params], settings_for_query)


def _rows_at_most(scope: SearchScope, ceiling: int) -> bool:
    """Whether the sources in scope hold at most `ceiling` chunks (counted on the
    (source, ordinal) index, stopping at ceiling + 1)."""
    with read_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {CHUNK} WHERE source_id = ANY(%s) LIMIT %s) t",
            [list(scope.source_ids or ()), ceiling + 1],
        )
        return cursor.fetchone()[0] <= ceiling


def ef_search_for(limit: int) -> int:
    """HNSW candidate list size for a query wanting `limit` rows (≥ limit, ≥ the setting)."""
    return min(1000, max(settings.KIOKU_SEARCH_EF_SEARCH, limit * 2))
