"""The three layers: similar resolved cases in one query, manuals, escalation."""

import pytest

from dispatch.diagnosis import case_threshold, problem_card_diagnose, similar_cases
from dispatch.models import CardStatus, DiagnosisRecord, ProblemCard
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.spaces import space_state
from tests.dispatch.factories import (
    FINGERPRINT_MANUAL,
    make_card,
    make_case,
    make_fingerprint_manual,
    make_technician,
)
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db(transaction=True)

MOTOR_CABLE = "Re-seated the motor cable behind the inside escutcheon."


@pytest.fixture
def cases(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    found = {
        "e21": make_case(resolution=MOTOR_CABLE, error_code="E-21"),
        "app": make_case(
            brand="Lumio",
            lock_model="LM5",
            symptom="app",
            description="The phone app cannot find the lock over Bluetooth after the firmware update.",
            resolution="Reset the Bluetooth module and paired the app again.",
        ),
        "battery": make_case(
            symptom="battery",
            description="The lock beeps and the low battery icon flashes with new batteries.",
            resolution="Cleaned corroded battery contacts.",
        ),
    }
    embedding_run()
    return found


def offline_threshold_set(settings, threshold: float) -> None:
    """The hashing model's layer-1 threshold (these cases are embedded with it)."""
    settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {
        **settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE,
        "local-hash-v1": threshold,
    }


def test_each_offline_model_has_its_own_threshold(settings):
    settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {"local-hash-v1": 0.4, "local-use-m3": 0.7}
    settings.KIOKU_CASE_MIN_SIMILARITY = 0.75
    assert case_threshold("local-hash-v1") == 0.4
    assert case_threshold("local-use-m3") == 0.7
    assert case_threshold("text-embedding-3-small") == 0.75


def diagnose(card: ProblemCard):
    return problem_card_diagnose(card_id=card.pk)


def test_a_near_duplicate_is_answered_by_the_resolved_case(cases):
    card = make_card(
        description="I typed my PIN, the screen says E-21, and the bolt stays locked.",
        error_code="",
    )
    result = diagnose(card)
    assert result.layer == 1
    assert result.cases[0].card_id == cases["e21"].pk
    assert result.cases[0].resolution == MOTOR_CABLE
    assert result.cases[0].similarity >= result.threshold == case_threshold("local-hash-v1")
    card.refresh_from_db()
    assert card.status == CardStatus.DIAGNOSED and card.diagnosis["layer"] == 1
    assert DiagnosisRecord.objects.get(card=card).best_similarity == result.best_similarity


def test_layer_one_is_one_sql_statement(cases, django_assert_num_queries):
    card = make_card()
    embedding_run()
    card.refresh_from_db()
    space = space_state().active
    vector = list(getattr(card.embedding, "to_list", lambda: card.embedding)())
    with django_assert_num_queries(1):
        found, best = similar_cases(card=card, vector=vector, space=space, threshold=0.1)
    assert found and best is not None


@pytest.mark.parametrize(("offset", "answers"), [(-1e-9, True), (0.0, True), (1e-9, False)])
def test_the_threshold_boundary(cases, settings, offset, answers):
    card = make_card(symptom="battery", description="Battery icon keeps flashing and it beeps.")
    _, best = similar_cases(
        card=card,
        vector=_vector(card),
        space=space_state().active,
        threshold=1.0,
    )
    offline_threshold_set(settings, best + offset)
    result = diagnose(card)
    assert (result.layer == 1) is answers
    assert result.best_similarity == best


def test_an_error_code_on_the_same_model_is_strong_evidence_in_other_words(cases, settings):
    offline_threshold_set(settings, 0.99)  # no wording is that close
    card = make_card(error_code="e21", description="Customer says: red light, nothing happens.")
    result = diagnose(card)
    assert result.layer == 1
    assert result.cases[0].card_id == cases["e21"].pk and result.cases[0].same_code


def test_a_disabled_case_is_not_used(cases):
    ProblemCard.objects.filter(pk=cases["e21"].pk).update(is_case_enabled=False)
    card = make_card(description="I typed my PIN, the screen says E-21, and the bolt stays locked.")
    result = diagnose(card)
    assert cases["e21"].pk not in [case.card_id for case in result.cases]


def test_without_a_case_the_brands_manuals_answer(cases, settings):
    make_fingerprint_manual()
    make_source(
        text=FINGERPRINT_MANUAL, title="Other brand", uri="kb://other", metadata={"brand": "Lumio"}
    )
    embedding_run()
    offline_threshold_set(settings, 0.99)
    card = make_card(
        brand="KAGIYA", symptom="keypad", description="The fingerprint reader ignores my finger."
    )
    result = diagnose(card)
    assert result.layer == 2
    assert result.passages and {p["source_title"] for p in result.passages} == {
        "KG-200 fingerprint"
    }
    assert result.answer and "Kagiya" in result.searched["manuals"]


def test_with_nothing_relevant_the_card_is_escalated_with_technicians(cases, settings):
    offline_threshold_set(settings, 0.99)
    near = make_technician("Lin", areas=["Taipei Da'an"], skills={"nobody": 4})
    make_technician("Sato", areas=["Tokyo Shibuya"], skills={"nobody": 5})
    card = make_card(
        brand="Nobody", symptom="damage", description="Someone kicked the door; the handle is bent."
    )
    result = diagnose(card)
    assert result.layer == 3
    assert "escalate" in result.reason
    assert [t["technician_id"] for t in result.technicians] == [near.pk]
    card.refresh_from_db()
    assert card.status == CardStatus.OPEN and card.diagnosis["layer"] == 3


def test_a_card_not_yet_embedded_is_compared_all_the_same(cases):
    card = make_card(description="I typed my PIN, the screen says E-21, and the bolt stays locked.")
    assert card.embedding is None
    assert diagnose(card).layer == 1


def _vector(card: ProblemCard) -> list[float]:
    from knowledge.embed.spaces import embedding_provider_for

    return list(embedding_provider_for(space_state().active).embed([card.search_text])[0])
