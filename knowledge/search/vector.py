"""The vector leg: nearest chunks by cosine distance in the active embedding space."""

from django.conf import settings

from core.replicas import read_connection
from knowledge.embed.spaces import VectorSpace
from knowledge.search.base import RankedRow, SearchScope
from knowledge.search.filters import scope_where
from knowledge.search.sql import CHUNK, SELECT_COLUMNS, SOURCE, fetch_after_settings


def vector_search(
    vector: list[float],
    *,
    space: VectorSpace,
    limit: int,
    scope: SearchScope,
    min_similarity: float | None,
) -> list[RankedRow]:
    """Nearest chunks by cosine distance.

    Unfiltered, and when the filter leaves many rows, the HNSW index answers with pgvector's
    iterative scan (relaxed order, re-sorted outside the materialized CTE as pgvector
    documents). When the filter leaves at most KIOKU_SEARCH_EXACT_MAX_ROWS rows the distance is
    computed for each of them instead: an HNSW walk that must skip most of the graph to find
    rows of a small, distant subset returns full but inexact results (recall 0.67 measured),
    while an exact scan of a few thousand rows is both exact and cheap. An exact scan over more
    than KIOKU_SEARCH_EXACT_PARALLEL_ROWS rows shares them with a parallel worker.
    """
    if scope.is_empty:
        return []
    clauses, params = scope_where(scope)
    clauses += [f"c.{space.column} IS NOT NULL", f"c.{space.model_column} = %s"]
    params.append(space.model)
    literal = "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
    dims = space.dimensions
    threshold = ""
    outer_params: list = []
    if min_similarity is not None:
        threshold = "WHERE 1 - distance >= %s"
        outer_params.append(min_similarity)
    rows = _rows_in_scope(scope, settings.KIOKU_SEARCH_EXACT_MAX_ROWS)
    exact = rows is not None and rows <= settings.KIOKU_SEARCH_EXACT_MAX_ROWS
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
    if exact and rows > settings.KIOKU_SEARCH_EXACT_PARALLEL_ROWS:
        settings_for_query |= EXACT_PARALLEL
    with read_connection().cursor() as cursor:
        rows = fetch_after_settings(
            cursor, settings_for_query, sql, [literal, *params, limit, *outer_params]
        )
    return [RankedRow(row[0], row[:-1], 1.0 - float(row[-1])) for row in rows]


# An exact scan over many rows splits them with one parallel worker: each row costs ~3.4 µs
# (2.3 of them reading the vector back from TOAST), so 10,000 rows took p50 43 ms alone and 34 ms
# with a worker on two cores (two workers: slower). The planner's cost model would not start a
# worker for a few thousand rows, hence the zero costs.
EXACT_PARALLEL = {
    "max_parallel_workers_per_gather": "1",
    "parallel_setup_cost": "0",
    "parallel_tuple_cost": "0",
    "min_parallel_table_scan_size": "0",
    "min_parallel_index_scan_size": "0",
}


def _rows_in_scope(scope: SearchScope, ceiling: int) -> int | None:
    """Chunks of the sources in scope, counted up to ceiling + 1 on the (source, ordinal)
    index; None for a search over every source."""
    if scope.source_ids is None:
        return None
    with read_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {CHUNK} WHERE source_id = ANY(%s) LIMIT %s) t",
            [list(scope.source_ids), ceiling + 1],
        )
        return cursor.fetchone()[0]


def ef_search_for(limit: int) -> int:
    """HNSW candidate list size for a query wanting `limit` rows (≥ limit, ≥ the setting)."""
    return min(1000, max(settings.KIOKU_SEARCH_EF_SEARCH, limit * 2))
