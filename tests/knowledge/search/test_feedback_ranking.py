"""Search ranks with the chunks' outcome boosts (knowledge/search/fusion.py), in every mode, and
without them when asked (`use_feedback=False`, the evaluation's comparison) or when the weight is
0."""

import pytest

from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.feedback import chunk_feedback_apply
from knowledge.models import FeedbackReason
from knowledge.search.service import chunk_search
from tests.knowledge.factories import BATTERY, E21, make_source

pytestmark = pytest.mark.django_db(transaction=True)

QUERY = "E-21 strike plate batteries"


@pytest.fixture
def corpus(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_source(text=BATTERY, title="Battery guide", uri="kb://battery")
    make_source(text=E21, title="Troubleshooting", uri="kb://e21")
    embedding_run()


def ranking(result) -> tuple[list[int], list[float]]:
    return [hit.chunk_id for hit in result.hits], [round(hit.score, 9) for hit in result.hits]


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_a_raised_chunk_moves_up_and_ranks_as_before_without_feedback(corpus, settings, mode):
    before = chunk_search(QUERY, mode=mode, top_k=5)
    assert len(before.hits) >= 2
    first, second = before.hits[0], before.hits[1]
    step = settings.KIOKU_FEEDBACK_STEP
    # Enough weight for one signal to close the gap between the two.
    settings.KIOKU_FEEDBACK_WEIGHT = (first.score - second.score + 0.001) / step
    chunk_feedback_apply(
        chunk_ids=[second.chunk_id], reason=FeedbackReason.ORDER_FIX_MATCHED, origin_ref="order:1"
    )

    after = chunk_search(QUERY, mode=mode, top_k=5)
    assert [hit.chunk_id for hit in after.hits[:2]] == [second.chunk_id, first.chunk_id]
    assert after.hits[0].feedback_boost == step
    assert after.hits[0].score == pytest.approx(
        second.score + settings.KIOKU_FEEDBACK_WEIGHT * step
    )
    without = chunk_search(QUERY, mode=mode, top_k=5, use_feedback=False)
    assert ranking(without) == ranking(before)


def test_a_lowered_chunk_moves_down_and_a_weight_of_zero_turns_feedback_off(corpus, settings):
    before = chunk_search(QUERY, mode="keyword", top_k=5)
    first, second = before.hits[0], before.hits[1]
    settings.KIOKU_FEEDBACK_WEIGHT = (
        first.score - second.score + 0.001
    ) / settings.KIOKU_FEEDBACK_STEP
    chunk_feedback_apply(
        chunk_ids=[first.chunk_id], reason=FeedbackReason.DIAGNOSIS_WRONG, origin_ref="order:1"
    )
    assert chunk_search(QUERY, mode="keyword", top_k=5).hits[0].chunk_id == second.chunk_id
    settings.KIOKU_FEEDBACK_WEIGHT = 0
    assert ranking(chunk_search(QUERY, mode="keyword", top_k=5)) == ranking(before)
