"""Problem card writes: validation, normalisation, re-embedding on edits, resolution."""

import pytest

from dispatch import queries
from dispatch.errors import DispatchError
from dispatch.models import CardStatus, ProblemCard
from dispatch.services import (
    CustomerIn,
    case_uri,
    problem_card_create,
    problem_card_resolve,
    problem_card_update,
)
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import EmbeddingStatus, KnowledgeSource, SourceType
from knowledge.search.service import chunk_search
from tests.dispatch.factories import make_card

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def test_a_new_card_is_normalised_and_owes_its_vector():
    card = make_card(brand=" Kagiya ", lock_model="kg 200", error_code="e21")
    assert (card.brand, card.brand_key, card.model_key) == ("Kagiya", "kagiya", "kg200")
    assert card.error_code == "E-21"
    assert card.search_text.startswith("Kagiya kg 200\nWon't unlock\nError E-21\n")
    assert card.status == CardStatus.OPEN and card.version == 1
    assert card.embedding_status == EmbeddingStatus.PENDING and card.embedding is None


def test_the_shared_pipeline_embeds_cards_like_chunks():
    card = make_card()
    embedding_run()
    card.refresh_from_db()
    assert card.embedding_status == EmbeddingStatus.DONE
    assert card.embedding is not None and card.embedding_model == "local-hash-v1"
    assert card.embedding_text_hash == card.search_text_hash


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"brand": "  "}, "brand"),
        ({"description": ""}, "description"),
        ({"symptom": "on_fire"}, "symptom"),
        ({"brand": "x" * 101}, "brand"),
        ({"description": 42}, "description"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(change, field):
    values = {
        "brand": "Kagiya",
        "symptom": "battery",
        "description": "Beeps all the time.",
        **change,
    }
    with pytest.raises(DispatchError) as excinfo:
        problem_card_create(customer=CustomerIn(name="Chen"), **values)
    assert excinfo.value.code == "DISPATCH_INVALID_CARD"
    assert excinfo.value.details["field"] == field
    assert not ProblemCard.objects.exists()


def test_editing_the_description_drops_the_vector_and_queues_the_card_again():
    card = make_card()
    embedding_run()
    card = problem_card_update(card_id=card.pk, version=1, description="Now it beeps twice.")
    assert card.version == 2
    assert card.embedding is None and card.embedding_status == EmbeddingStatus.PENDING
    assert "beeps twice" in card.search_text


def test_editing_the_address_keeps_the_vector():
    card = make_card()
    embedding_run()
    card = problem_card_update(card_id=card.pk, address="No. 1, Section 2, Heping E. Rd")
    assert card.embedding is not None and card.embedding_status == EmbeddingStatus.DONE


def test_a_stale_version_loses_the_edit():
    card = make_card()
    problem_card_update(card_id=card.pk, version=1, address="Somewhere")
    with pytest.raises(DispatchError) as excinfo:
        problem_card_update(card_id=card.pk, version=1, address="Elsewhere")
    assert excinfo.value.code == "DISPATCH_CONFLICT" and excinfo.value.status == 409
    assert ProblemCard.objects.get().address == "Somewhere"


def test_resolving_needs_a_resolution():
    card = make_card()
    with pytest.raises(DispatchError) as excinfo:
        problem_card_resolve(card_id=card.pk, resolution="   ")
    assert excinfo.value.code == "DISPATCH_RESOLUTION_REQUIRED"
    assert ProblemCard.objects.get().status == CardStatus.OPEN


def test_a_resolved_card_becomes_case_knowledge_that_search_finds():
    card = make_card(error_code="E21")
    card = problem_card_resolve(
        card_id=card.pk,
        resolution="Replaced the worn strike plate screws.",
        root_cause="Loose strike",
    )
    assert card.status == CardStatus.RESOLVED and card.resolved_at is not None
    source = KnowledgeSource.objects.get(uri=case_uri(card))
    assert source.source_type == SourceType.CASE
    assert source.metadata["problem_card_id"] == card.pk
    hits = chunk_search("strike plate screws", mode="keyword").hits
    assert hits and {hit.source_id for hit in hits} == {source.pk}


def test_a_resolved_card_cannot_be_resolved_again():
    card = make_card()
    problem_card_resolve(card_id=card.pk, resolution="Fixed.")
    with pytest.raises(DispatchError) as excinfo:
        problem_card_resolve(card_id=card.pk, resolution="Fixed again.")
    assert excinfo.value.code == "DISPATCH_INVALID_TRANSITION"


def test_a_card_resolved_before_the_pipeline_reached_it_is_written_with_its_vector():
    card = make_card()
    assert card.embedding_status == EmbeddingStatus.PENDING
    card = problem_card_resolve(card_id=card.pk, resolution="Re-seated the motor cable.")
    assert card.embedding_status == EmbeddingStatus.DONE
    assert card.embedding is not None and card.embedding_model == "local-hash-v1"
    assert card.embedding_text_hash == card.search_text_hash


def test_with_the_provider_down_a_resolved_card_waits_for_the_pipeline(settings, openai_stub):
    settings.KIOKU_EMBEDDING_DIMENSIONS = 1536
    card = make_card()
    openai_stub.fail_next(500, count=50)
    card = problem_card_resolve(card_id=card.pk, resolution="Re-seated the motor cable.")
    assert card.status == CardStatus.RESOLVED
    assert card.embedding_status == EmbeddingStatus.PENDING and card.embedding is None
    assert not queries.problem_cards().get(pk=card.pk).has_vector  # "not yet searchable"
    openai_stub.reset()
    embedding_run()
    assert queries.problem_cards().get(pk=card.pk).has_vector


def test_a_misleading_case_disabled_by_a_curator_leaves_diagnosis_search_and_ask():
    from dispatch.diagnosis import problem_card_similar
    from dispatch.services import problem_card_case_curate

    case = make_card(error_code="E21")
    problem_card_resolve(card_id=case.pk, resolution="Replaced the worn strike plate screws.")
    embedding_run()
    card = make_card(error_code="E21")
    assert [c.card_id for c in problem_card_similar(card_id=card.pk).cases] == [case.pk]

    problem_card_case_curate(card_id=case.pk, is_case_enabled=False)

    assert problem_card_similar(card_id=card.pk).cases == []
    assert not KnowledgeSource.objects.get(uri=case_uri(case)).enabled
    assert chunk_search("strike plate screws", mode="keyword").hits == []
    problem_card_case_curate(card_id=case.pk, is_case_enabled=True)
    assert chunk_search("strike plate screws", mode="keyword").hits


def test_a_curator_fixes_a_resolution_and_the_case_source_follows():
    from dispatch.services import problem_card_case_curate

    case = make_card()
    problem_card_resolve(card_id=case.pk, resolution="Replaced the battery.")
    card = problem_card_case_curate(card_id=case.pk, resolution="Cleaned the corroded contacts.")
    assert card.resolution == "Cleaned the corroded contacts."
    source = KnowledgeSource.objects.get(uri=case_uri(card))
    assert "Cleaned the corroded contacts." in " ".join(c.content for c in source.chunks.all())
    with pytest.raises(DispatchError) as excinfo:
        problem_card_case_curate(card_id=case.pk, resolution="  ")
    assert excinfo.value.code == "DISPATCH_RESOLUTION_REQUIRED"


def test_only_a_resolved_case_is_curated():
    from dispatch.services import problem_card_case_curate

    with pytest.raises(DispatchError) as excinfo:
        problem_card_case_curate(card_id=make_card().pk, is_case_enabled=False)
    assert excinfo.value.code == "DISPATCH_INVALID_TRANSITION"
