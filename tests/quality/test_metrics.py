import math

import pytest

from quality.metrics import ExpectedItem, RankedHit, case_score, mean_scores

# Five hits: chunks of sources A, X, B, A again, C.
HITS = [
    RankedHit(chunk_id=11, source_id=1),  # A
    RankedHit(chunk_id=99, source_id=9),  # X, not expected
    RankedHit(chunk_id=21, source_id=2),  # B
    RankedHit(chunk_id=12, source_id=1),  # A again: counts once
    RankedHit(chunk_id=31, source_id=3),  # C, but another chunk than the expected one
]


def test_graded_metrics_match_the_hand_computed_example():
    expected = [
        ExpectedItem(source_id=1, grade=3),  # found at rank 1
        ExpectedItem(source_id=2, grade=1),  # found at rank 3
        ExpectedItem(source_id=3, chunk_id=39, grade=2),  # that chunk never comes back
    ]
    scores = case_score(HITS, expected)
    assert scores.first_relevant_rank == 1
    assert scores.recall_at_1 == pytest.approx(1 / 3)
    assert scores.recall_at_3 == pytest.approx(2 / 3)
    assert scores.recall_at_10 == pytest.approx(2 / 3)
    assert scores.reciprocal_rank == 1.0
    assert scores.gains == (3, 0, 1, 0, 0)
    # DCG = (2³−1)/log2(2) + (2¹−1)/log2(4) = 7 + 0.5; ideal = 7 + 3/log2(3) + 1/log2(4).
    ideal = 7 + 3 / math.log2(3) + 0.5
    assert scores.ndcg_at_10 == pytest.approx(7.5 / ideal)
    assert scores.ndcg_at_10 == pytest.approx(0.798485, abs=1e-6)


def test_binary_relevance_is_every_grade_one():
    expected = [
        ExpectedItem(source_id=1),
        ExpectedItem(source_id=2),
        ExpectedItem(source_id=3, chunk_id=39),
    ]
    scores = case_score(HITS, expected)
    # DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3) + 1/log2(4).
    assert scores.ndcg_at_10 == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert scores.ndcg_at_10 == pytest.approx(0.703918, abs=1e-6)


def test_reciprocal_rank_is_one_over_the_first_relevant_rank():
    scores = case_score(HITS, [ExpectedItem(source_id=2)])
    assert scores.first_relevant_rank == 3
    assert scores.reciprocal_rank == pytest.approx(1 / 3)
    assert scores.recall_at_1 == 0.0
    assert scores.recall_at_3 == 1.0


def test_a_chunk_expectation_matches_only_that_chunk():
    scores = case_score(HITS, [ExpectedItem(source_id=1, chunk_id=12, grade=2)])
    assert scores.first_relevant_rank == 4
    assert scores.gains == (0, 0, 0, 2, 0)
    assert scores.ndcg_at_10 == pytest.approx(1 / math.log2(5))


def test_nothing_found_scores_zero():
    scores = case_score(HITS, [ExpectedItem(source_id=7)])
    assert scores.first_relevant_rank is None
    assert (scores.recall_at_10, scores.reciprocal_rank, scores.ndcg_at_10) == (0.0, 0.0, 0.0)


def test_ndcg_looks_only_at_the_top_k():
    scores = case_score(HITS, [ExpectedItem(source_id=2)], k=2)
    assert scores.ndcg_at_10 == 0.0  # the name keeps @10; k cuts the list


def test_means_average_each_metric_over_cases():
    first = case_score(HITS, [ExpectedItem(source_id=1)])
    second = case_score(HITS, [ExpectedItem(source_id=2)])
    means = mean_scores([first, second])
    assert means["cases"] == 2
    assert means["reciprocal_rank"] == pytest.approx((1 + 1 / 3) / 2)
    assert means["recall_at_1"] == pytest.approx(0.5)
