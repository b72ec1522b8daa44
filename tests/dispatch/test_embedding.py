"""Problem cards ride the shared embedding pipeline, also through a model switch."""

import pytest

from dispatch.diagnosis import problem_card_similar
from dispatch.models import ProblemCard
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.spaces import embedding_switch_start, space_state, vector_indexes
from tests.dispatch.factories import make_card, make_case

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_A = "local-hash-v1"
MODEL_B = "text-embedding-3-small"


@pytest.fixture(autouse=True)
def _clean(vector_indexes_restored):
    pipeline_resume()


def test_a_model_switch_re_embeds_cards_and_never_mixes_models(settings, openai_stub):
    settings.OPENAI_API_KEY = ""
    case = make_case(error_code="E-21")
    card = make_card()
    embedding_run()
    assert set(ProblemCard.objects.values_list("embedding_model", flat=True)) == {MODEL_A}

    settings.OPENAI_API_KEY = openai_stub.api_key
    settings.OPENAI_BASE_URL = openai_stub.base_url
    settings.KIOKU_EMBEDDING_MODEL = MODEL_B
    settings.KIOKU_EMBEDDING_DIMENSIONS = 256
    report = embedding_switch_start()
    assert report.outcome == "started" and report.queued >= 2  # the chunks of the case source too
    assert "card_embedding_alt_hnsw_256" in vector_indexes(ProblemCard)

    embedding_run()  # fill the other slot, cut over, clear the old one

    state = space_state()
    assert (state.active.model, state.active.slot) == (MODEL_B, 2)
    assert set(ProblemCard.objects.values_list("embedding_alt_model", flat=True)) == {MODEL_B}
    assert not ProblemCard.objects.filter(embedding__isnull=False).exists()
    assert set(vector_indexes(ProblemCard)) == {"card_embedding_alt_hnsw_256"}
    similar = problem_card_similar(card_id=card.pk)
    assert similar.embedding_model == MODEL_B
    assert similar.best_similarity is not None  # compared in the new space
    assert [c.card_id for c in similar.cases] == [case.pk]  # the same report, in the new space
