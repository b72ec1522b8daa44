"""Similarity thresholds stored per embedding model (and brand): the reader's fallbacks, the audit
rows written by apply and reset, and the code paths that read them (ask, diagnosis)."""

import pytest
from django.db import IntegrityError, transaction

from core.models import ThresholdKind, ThresholdSetting
from core.thresholds import (
    ThresholdError,
    threshold_setting_apply,
    threshold_setting_reset,
    threshold_value,
)

pytestmark = pytest.mark.django_db

CASE = ThresholdKind.CASE_SIMILARITY
ASK = ThresholdKind.ASK_SIMILARITY
MODEL = "text-embedding-3-small"


def apply(value: float, *, kind: str = CASE, model: str = MODEL, brand_key: str = "", by="ana"):
    return threshold_setting_apply(
        kind=kind,
        model=model,
        brand_key=brand_key,
        value=value,
        default=0.75,
        reason="test",
        evidence={"method": "by hand"},
        by=by,
    )


def read(*, kind: str = CASE, model: str = MODEL, brand_key: str = "") -> float:
    return threshold_value(kind=kind, model=model, brand_key=brand_key, default=0.75)


def test_without_a_row_the_default_is_in_force():
    assert read(brand_key="kagiya") == 0.75


def test_an_every_brand_row_replaces_the_default_for_that_model_only():
    apply(0.7)
    assert read() == read(brand_key="kagiya") == 0.7
    assert read(model="local-hash-v1") == 0.75
    assert read(kind=ASK) == 0.75


def test_a_brand_row_wins_over_the_every_brand_row_for_that_brand_only():
    apply(0.7)
    apply(0.8, brand_key="KAGIYA")
    assert read(brand_key="kagiya") == read(brand_key="Kagiya ") == 0.8
    assert read(brand_key="lumio") == read() == 0.7


def test_applying_deactivates_the_row_it_replaces_and_records_what_was_in_force():
    first = apply(0.7, by="ana")
    second = apply(0.72, by="ben")
    first.refresh_from_db()
    assert not first.is_active and first.deactivated_at is not None
    assert second.is_active and second.set_by == "ben"
    assert (first.previous_value, second.previous_value) == (0.75, 0.7)
    assert read() == 0.72
    assert ThresholdSetting.objects.count() == 2


def test_the_database_refuses_two_active_rows_for_one_model_and_brand():
    apply(0.7)
    with pytest.raises(IntegrityError), transaction.atomic():
        ThresholdSetting.objects.create(kind=CASE, embedding_model=MODEL, value=0.6, is_active=True)


def test_a_reset_returns_to_the_default_and_is_recorded():
    apply(0.7)
    reset = threshold_setting_reset(kind=CASE, model=MODEL, default=0.75, by="ana")
    assert reset.value is None and not reset.is_active and reset.previous_value == 0.7
    assert reset.set_by == "ana"
    assert read() == 0.75
    assert not ThresholdSetting.objects.active().exists()


def test_a_brand_reset_falls_back_to_the_every_brand_value():
    apply(0.7)
    apply(0.8, brand_key="kagiya")
    threshold_setting_reset(kind=CASE, model=MODEL, brand_key="kagiya", default=0.75, by="ana")
    assert read(brand_key="kagiya") == 0.7


def test_a_reset_with_nothing_in_force_writes_nothing():
    assert threshold_setting_reset(kind=CASE, model=MODEL, default=0.75, by="ana") is None
    assert not ThresholdSetting.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"value": 1.5}, "value"),
        ({"value": float("nan")}, "value"),
        ({"kind": "chunk_similarity"}, "kind"),
        ({"kind": ASK, "brand_key": "kagiya"}, "brand_key"),
        ({"model": " "}, "embedding_model"),
    ],
)
def test_apply_refuses_a_setting_out_of_bounds(changes, field):
    arguments = {"kind": CASE, "model": MODEL, "brand_key": "", "value": 0.7} | changes
    with pytest.raises(ThresholdError) as raised:
        threshold_setting_apply(**arguments, default=0.75, reason="", by="ana")
    assert (raised.value.code, raised.value.details["field"]) == ("THRESHOLD_INVALID", field)
    assert not ThresholdSetting.objects.exists()


# --- The code that reads them ------------------------------------------------------------------


def test_case_threshold_reads_the_row_of_the_cards_brand(settings):
    from dispatch.diagnosis import case_threshold

    apply(0.6, model="local-hash-v1", brand_key="kagiya")
    assert case_threshold("local-hash-v1", brand_key="kagiya") == 0.6
    assert (
        case_threshold("local-hash-v1", brand_key="lumio")
        == (settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"])
    )
    assert case_threshold(MODEL) == settings.KIOKU_CASE_MIN_SIMILARITY


def test_the_ask_threshold_reads_the_row_of_the_search_model(settings):
    from knowledge.answer.answering import similarity_threshold
    from knowledge.search.base import SearchResult

    def result(model: str) -> SearchResult:
        return SearchResult("q", "hybrid", 5, [], model, model == "local-hash-v1", 1.0)

    apply(0.42, kind=ASK)
    assert similarity_threshold(result(MODEL)) == 0.42
    assert (
        similarity_threshold(result("local-hash-v1"))
        == (settings.KIOKU_ASK_MIN_SIMILARITY_OFFLINE["local-hash-v1"])
    )


@pytest.mark.django_db(transaction=True)
def test_a_diagnosis_uses_and_records_the_threshold_set_for_the_cards_brand(settings):
    from dispatch.diagnosis import problem_card_diagnose
    from dispatch.models import DiagnosisRecord
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from tests.dispatch.factories import make_card, make_case

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_case(resolution="Re-seated the motor cable.", error_code="")
    embedding_run()
    near = "After entering the PIN the keypad shows E-21 and the bolt does not retract at all."
    assert problem_card_diagnose(card_id=make_card(description=near).pk).layer == 1

    apply(1.0, model="local-hash-v1", brand_key="Kagiya")
    diagnosis = problem_card_diagnose(card_id=make_card(description=near).pk)
    assert diagnosis.layer != 1 and diagnosis.threshold == 1.0
    assert DiagnosisRecord.objects.first().threshold == 1.0
    other_brand = make_card(brand="Lumio", description=near)
    assert (
        problem_card_diagnose(card_id=other_brand.pk).threshold
        == (settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"])
    )


@pytest.mark.django_db(transaction=True)
def test_an_ask_uses_the_threshold_set_for_its_model(settings):
    from knowledge.answer.answering import answer_ask
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from knowledge.models import AnswerOutcome
    from tests.knowledge.factories import make_source

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_source(text="# Batteries\n\nReplace the four AA batteries of the KG-200 every year.")
    embedding_run()
    question = "What is the capital of France?"
    assert answer_ask(question=question).outcome == AnswerOutcome.NO_RELEVANT

    apply(-1.0, kind=ASK, model="local-hash-v1")
    assert answer_ask(question=question).outcome == AnswerOutcome.ANSWERED


def test_the_admin_shows_the_history_read_only(client, make_user):
    row = apply(0.7)
    client.force_login(make_user("boss", "admin", is_staff=True))
    assert "0.7" in client.get("/admin/core/thresholdsetting/").content.decode()
    assert client.get(f"/admin/core/thresholdsetting/{row.pk}/change/").status_code == 200
    assert client.get("/admin/core/thresholdsetting/add/").status_code == 403
    assert client.post(f"/admin/core/thresholdsetting/{row.pk}/delete/").status_code == 403
    assert ThresholdSetting.objects.get(pk=row.pk).is_active
