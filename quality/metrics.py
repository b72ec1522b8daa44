"""Retrieval metrics over one ranked list, and their means.

A case expects *items* (a whole source, or one chunk of it) with a grade (1 relevant … 3 best).
A hit matches an item when it is that chunk, or any chunk of that source for a source-level item.
Each item counts once, at its best (first) rank, so ten chunks of one expected source are not
ten relevant hits:

- recall@k: the share of expected items found in the top k;
- reciprocal rank: 1 / the rank of the first hit that matches any item (0 if none);
- nDCG@k: DCG = Σ (2^grade − 1) / log2(rank + 1) over the first hit of each item within k,
  divided by the DCG of the items in their ideal order. With every grade 1 this is binary nDCG.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ExpectedItem:
    source_id: int | None
    chunk_id: int | None = None  # None: any chunk of the source
    grade: int = 1

    def matches(self, *, chunk_id: int, source_id: int) -> bool:
        if self.chunk_id is not None:
            return chunk_id == self.chunk_id
        return self.source_id is not None and source_id == self.source_id


@dataclass(frozen=True)
class RankedHit:
    chunk_id: int
    source_id: int


@dataclass(frozen=True)
class CaseScores:
    first_relevant_rank: int | None
    recall_at_1: float
    recall_at_3: float
    recall_at_10: float
    reciprocal_rank: float
    ndcg_at_10: float
    # The grade each hit earned (0: not relevant, or an item already found higher up).
    gains: tuple[int, ...]


def item_ranks(hits: Sequence[RankedHit], expected: Sequence[ExpectedItem]) -> list[int | None]:
    """For each expected item, the 1-based rank of the first hit that matches it."""
    ranks: list[int | None] = []
    for item in expected:
        rank = next(
            (
                position
                for position, hit in enumerate(hits, 1)
                if item.matches(chunk_id=hit.chunk_id, source_id=hit.source_id)
            ),
            None,
        )
        ranks.append(rank)
    return ranks


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    if not ranks:
        return 0.0
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)


def dcg(grades_by_rank: Iterable[int]) -> float:
    return sum((2**grade - 1) / math.log2(rank + 1) for rank, grade in enumerate(grades_by_rank, 1))


def case_score(
    hits: Sequence[RankedHit], expected: Sequence[ExpectedItem], *, k: int = 10
) -> CaseScores:
    """Every metric for one ranked list (only the first `k` hits are looked at for nDCG@k)."""
    ranks = item_ranks(hits, expected)
    gains = [0] * len(hits)
    # Each item's grade lands on its first rank; two items first found by the same hit (a chunk
    # and its source, both expected) give that hit the higher grade.
    for item, rank in zip(expected, ranks, strict=True):
        if rank is not None:
            gains[rank - 1] = max(gains[rank - 1], item.grade)
    found = [rank for rank in ranks if rank is not None]
    first = min(found) if found else None
    ideal = dcg(sorted((item.grade for item in expected), reverse=True)[:k])
    ndcg = dcg(gains[:k]) / ideal if ideal else 0.0
    return CaseScores(
        first_relevant_rank=first,
        recall_at_1=recall_at(ranks, 1),
        recall_at_3=recall_at(ranks, 3),
        recall_at_10=recall_at(ranks, 10),
        reciprocal_rank=1 / first if first else 0.0,
        ndcg_at_10=ndcg,
        gains=tuple(gains),
    )


METRIC_NAMES = ("recall_at_1", "recall_at_3", "recall_at_10", "reciprocal_rank", "ndcg_at_10")


def mean_scores(scores: Sequence[CaseScores]) -> dict[str, float | int]:
    """Means over cases (MRR is the mean reciprocal rank), with the case count."""
    summary: dict[str, float | int] = {"cases": len(scores)}
    for name in METRIC_NAMES:
        values = [getattr(score, name) for score in scores]
        summary[name] = sum(values) / len(values) if values else 0.0
    return summary
