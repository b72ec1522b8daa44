"""Fusing the legs into the hits shown: scores by mode, Reciprocal Rank Fusion for hybrid."""

from django.conf import settings

from knowledge.search.base import RankedRow, SearchHit
from knowledge.search.snippets import highlight_snippet
from knowledge.search.sql import jsonb_value


def hybrid_candidates(top_k: int) -> int:
    """Rows each leg of a hybrid search contributes to the fusion."""
    return max(top_k * 2, 20)


def hits_fuse(
    mode: str,
    vector_hits: list[RankedRow],
    keyword_hits: list[RankedRow],
    top_k: int,
    highlight: list[str],
    keyword_only: bool,
    *,
    use_feedback: bool = True,
) -> list[SearchHit]:
    """The hits shown, best first: each mode's score (RRF for hybrid), plus the pin boost and,
    unless `use_feedback` is off, KIOKU_FEEDBACK_WEIGHT × the chunk's outcome boost."""
    rows: dict[int, tuple] = {}
    vector_rank = {hit.chunk_id: (rank, hit.score) for rank, hit in enumerate(vector_hits, 1)}
    keyword_rank = {hit.chunk_id: (rank, hit.score) for rank, hit in enumerate(keyword_hits, 1)}
    for hit in [*vector_hits, *keyword_hits]:
        rows.setdefault(hit.chunk_id, hit.row)
    pin_boost = settings.KIOKU_SEARCH_PIN_BOOST
    if mode == "vector" or (mode == "hybrid" and not keyword_hits and not keyword_only):
        scored = {cid: score for cid, (_, score) in vector_rank.items()}
    elif mode == "keyword" or keyword_only:
        scored = {cid: score for cid, (_, score) in keyword_rank.items()}
    else:
        k = settings.KIOKU_SEARCH_RRF_K
        scored = {}
        for ranks in (vector_rank, keyword_rank):
            for cid, (rank, _) in ranks.items():
                scored[cid] = scored.get(cid, 0.0) + 1.0 / (k + rank)
    feedback_weight = settings.KIOKU_FEEDBACK_WEIGHT if use_feedback else 0.0
    final = {
        cid: score + (pin_boost if rows[cid][3] else 0.0) + feedback_weight * (rows[cid][8] or 0.0)
        for cid, score in scored.items()
    }
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
                location=jsonb_value(row[2]),
                pinned=bool(row[3]),
                score=final[cid],
                feedback_boost=row[8] or 0.0,
                vector_rank=vector_rank.get(cid, (None, None))[0],
                vector_score=vector_rank.get(cid, (None, None))[1],
                keyword_rank=keyword_rank.get(cid, (None, None))[0],
                keyword_score=keyword_rank.get(cid, (None, None))[1],
            )
        )
    return hits
