"""Threshold calibration: the maths on a hand-made distribution, the labels read from answers and
diagnoses, and applying a suggestion."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import ThresholdKind, ThresholdSetting
from dispatch.diagnosis import case_threshold
from dispatch.models import DiagnosisRecord, OrderStatus
from knowledge.models import AnswerFeedback, AnswerOutcome, AnswerSource
from quality.calibration import (
    CalibrationError,
    Point,
    ask_points,
    calibration_read,
    case_points,
    cut_stats,
    histogram,
    threshold_default_reset,
    threshold_suggestion_apply,
    youden_cut,
)
from tests.dispatch.factories import make_card, make_order, order_in_status
from tests.knowledge.factories import make_answer

LOCAL = "local-hash-v1"
CASE = ThresholdKind.CASE_SIMILARITY
ASK = ThresholdKind.ASK_SIMILARITY

# Positives at 0.9 0.8 0.7 0.6 0.4, negatives at 0.65 0.5 0.3 0.2 0.1. Youden's J per cut
# (TPR − FPR): 0.9 → .2, 0.8 → .4, 0.7 → .6, 0.65 → .4, 0.6 → .6, 0.5 → .4, 0.4 → .6, 0.3 → .4,
# 0.2 → .2, 0.1 → 0. The best J (.6) is reached at 0.7, 0.6 and 0.4: the higher cut, 0.7, wins.
POSITIVES = [0.9, 0.8, 0.7, 0.6, 0.4]
NEGATIVES = [0.65, 0.5, 0.3, 0.2, 0.1]
KNOWN = [Point(s, True) for s in POSITIVES] + [Point(s, False) for s in NEGATIVES]


@pytest.fixture(autouse=True)
def _offline(settings):
    """The local embedding model is the active one (no space recorded, no OpenAI key)."""
    settings.OPENAI_API_KEY = ""


# --- The maths ----------------------------------------------------------------------------------


def test_the_suggested_cut_maximises_youdens_j_and_ties_go_to_the_higher_cut():
    best = youden_cut(KNOWN)
    assert best.threshold == 0.7
    assert best.youden_j == pytest.approx(0.6)
    assert best.true_positive_rate == pytest.approx(0.6)
    assert best.false_positive_rate == 0.0
    assert (best.precision, best.recall) == (1.0, pytest.approx(0.6))
    assert (best.true_positives, best.false_positives) == (3, 0)
    assert (best.false_negatives, best.true_negatives) == (2, 5)


def test_the_rates_at_another_threshold_count_a_score_equal_to_it_as_passing():
    at = cut_stats(KNOWN, 0.5)
    assert (at.true_positives, at.false_positives) == (4, 2)
    assert at.precision == pytest.approx(4 / 6)
    assert at.recall == pytest.approx(0.8)
    assert at.youden_j == pytest.approx(0.4)


def test_nothing_passing_has_no_precision():
    at = cut_stats(KNOWN, 0.95)
    assert at.precision is None and at.recall == 0.0 and at.youden_j == 0.0


def test_without_both_labels_there_is_no_cut():
    assert youden_cut([Point(0.9, True), Point(0.8, True)]) is None
    assert youden_cut([]) is None


def test_the_histogram_counts_each_label_per_bin_and_keeps_the_ends_inside():
    bins = histogram([*KNOWN, Point(1.0, True), Point(-0.2, False)], bins=4)
    assert [(b.low, b.high) for b in bins] == [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b.positives for b in bins] == [0, 1, 2, 3]
    assert [b.negatives for b in bins] == [3, 1, 2, 0]


def test_a_score_on_a_bin_edge_falls_in_the_bin_it_starts():
    bins = histogram([Point(0.7, True), Point(0.35, False)], bins=20)
    assert bins[14].low == pytest.approx(0.7) and bins[14].positives == 1
    assert bins[7].low == pytest.approx(0.35) and bins[7].negatives == 1


# --- Labels from answers --------------------------------------------------------------------


def answer_with_best(
    score: float | None, *, feedback: str, outcome: str = AnswerOutcome.ANSWERED
) -> None:
    answer = make_answer("How do I change the batteries?", outcome=outcome, feedback=feedback)
    for rank, vector_score in enumerate([score, None if score is None else score - 0.2], 1):
        AnswerSource.objects.create(
            answer=answer,
            source_id=1,
            source_title="Batteries",
            quoted_text="…",
            score=0.03,
            vector_score=vector_score,
            rank=rank,
        )


@pytest.mark.django_db
def test_answers_are_labelled_by_their_feedback_at_their_best_similarity():
    answer_with_best(0.8, feedback=AnswerFeedback.HELPFUL)
    answer_with_best(0.55, feedback=AnswerFeedback.NOT_HELPFUL)
    answer_with_best(0.4, feedback=AnswerFeedback.HELPFUL, outcome=AnswerOutcome.NO_RELEVANT)
    answer_with_best(0.45, feedback=AnswerFeedback.NOT_HELPFUL, outcome=AnswerOutcome.NO_RELEVANT)
    answer_with_best(0.9, feedback=AnswerFeedback.NONE)
    answer_with_best(None, feedback=AnswerFeedback.HELPFUL)

    labelled = ask_points()
    assert sorted(labelled.points[(LOCAL, "")], key=lambda p: p.score) == [
        Point(0.4, False),
        Point(0.55, False),
        Point(0.8, True),
    ]
    assert labelled.left_out == {
        "refusal marked not helpful (ambiguous)": 1,
        "no passage with a vector similarity": 1,
    }


# --- Labels from diagnoses ------------------------------------------------------------------


def diagnosed(card, *, layer: int, best: float, model: str = LOCAL, ago: int = 60):
    record = DiagnosisRecord.objects.create(
        card=card,
        layer=layer,
        reason="test",
        embedding_model=model,
        best_similarity=best,
        threshold=0.45,
    )
    DiagnosisRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(minutes=ago)
    )
    return record


@pytest.mark.django_db
def test_diagnoses_are_labelled_by_what_happened_next_to_the_card():
    resolved = make_card()
    diagnosed(resolved, layer=1, best=0.8)
    order_in_status(OrderStatus.COMPLETED, order=make_order(card=resolved))

    cancelled = make_card(brand="Lumio")
    diagnosed(cancelled, layer=1, best=0.6)
    order_in_status(OrderStatus.CANCELLED, order=make_order(card=cancelled))

    escalated_later = make_card()
    diagnosed(escalated_later, layer=1, best=0.5, ago=60)
    diagnosed(escalated_later, layer=3, best=0.3, ago=30)

    diagnosed(make_card(), layer=1, best=0.7)  # no outcome yet
    diagnosed(make_card(), layer=2, best=0.4)  # the manuals answered

    wrong = make_card()  # completed, but the fix did not match the diagnosis
    diagnosed(wrong, layer=1, best=0.65)
    order = order_in_status(OrderStatus.COMPLETED, order=make_order(card=wrong))
    order.diagnosis_matched = False
    order.save(update_fields=["diagnosis_matched"])

    labelled = case_points()
    assert sorted(labelled.points[(LOCAL, "kagiya")], key=lambda p: p.score) == [
        Point(0.3, False),
        Point(0.5, False),
        Point(0.65, False),
        Point(0.8, True),
    ]
    assert labelled.points[(LOCAL, "lumio")] == [Point(0.6, False)]
    assert labelled.left_out == {"no outcome yet": 1, "answered from the manuals": 1}


# --- Groups, suggestions and applying them ----------------------------------------------------


def seed_known_cases(brand: str = "Kagiya") -> None:
    """The known distribution as layer-1 diagnoses that were resolved (positives) or
    cancelled (negatives)."""
    for score in POSITIVES:
        card = make_card(brand=brand)
        diagnosed(card, layer=1, best=score)
        order_in_status(OrderStatus.COMPLETED, order=make_order(card=card))
    for score in NEGATIVES:
        diagnosed(make_card(brand=brand), layer=3, best=score)


@pytest.mark.django_db
def test_too_few_points_give_no_suggestion_and_say_why(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 6
    seed_known_cases()
    group = calibration_read(kind=CASE).groups[0]
    assert (group.embedding_model, group.positives, group.negatives) == (LOCAL, 5, 5)
    assert group.suggestion is None
    assert "5 positive and 5 negative" in group.no_suggestion_reason
    assert "at least 6" in group.no_suggestion_reason
    assert group.at_current.threshold == settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"]


@pytest.mark.django_db
def test_outcomes_the_similarity_does_not_separate_give_no_suggestion(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 2
    for score in (0.2, 0.3):
        answer_with_best(score, feedback=AnswerFeedback.HELPFUL)
    for score in (0.8, 0.9):
        answer_with_best(score, feedback=AnswerFeedback.NOT_HELPFUL)
    group = calibration_read(kind=ASK).groups[0]
    assert group.suggestion is None and "do not separate" in group.no_suggestion_reason


@pytest.mark.django_db
def test_a_group_with_enough_points_suggests_the_known_cut(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    [group] = calibration_read(kind=CASE).groups  # one brand: no brand group besides the model's
    assert group.suggestion.threshold == 0.7
    assert group.at_current.threshold == 0.45
    assert (group.at_current.true_positives, group.at_current.false_positives) == (4, 2)


@pytest.mark.django_db
def test_a_brand_with_enough_points_of_its_own_gets_its_own_group(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases("Kagiya")
    diagnosed(make_card(brand="Lumio"), layer=3, best=0.9)
    groups = calibration_read(kind=CASE).groups
    assert [(g.brand_key, g.positives, g.negatives) for g in groups] == [
        ("", 5, 6),
        ("kagiya", 5, 5),
    ]


@pytest.mark.django_db
def test_applying_the_suggestion_stores_it_with_its_evidence_and_diagnosis_reads_it(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    setting = threshold_suggestion_apply(kind=CASE, model=LOCAL, shown_value=0.7, by="ana")
    assert setting.is_active and setting.value == 0.7 and setting.set_by == "ana"
    assert setting.previous_value == settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"]
    assert setting.evidence["method"] == "youden_j"
    assert (setting.evidence["positives"], setting.evidence["negatives"]) == (5, 5)
    assert setting.evidence["suggested"]["youden_j"] == pytest.approx(0.6)
    assert case_threshold(LOCAL, brand_key="anything") == 0.7

    threshold_default_reset(kind=CASE, model=LOCAL, by="ana")
    assert case_threshold(LOCAL) == settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"]
    assert ThresholdSetting.objects.count() == 2


@pytest.mark.django_db
def test_a_suggestion_that_moved_since_the_page_showed_it_is_not_applied(settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    with pytest.raises(CalibrationError) as raised:
        threshold_suggestion_apply(kind=CASE, model=LOCAL, shown_value=0.6, by="ana")
    assert raised.value.code == "CALIBRATION_STALE"
    assert not ThresholdSetting.objects.exists()


@pytest.mark.django_db
def test_there_is_nothing_to_apply_without_a_suggestion():
    with pytest.raises(CalibrationError) as raised:
        threshold_suggestion_apply(kind=ASK, model=LOCAL, shown_value=0.5, by="ana")
    assert raised.value.code == "CALIBRATION_NO_SUGGESTION"


@pytest.mark.django_db(transaction=True)
def test_a_real_diagnosis_then_a_completed_order_is_a_positive_at_its_best_similarity():
    from dispatch.diagnosis import problem_card_diagnose
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from tests.dispatch.factories import make_case

    pipeline_resume()
    make_case(resolution="Re-seated the motor cable.")
    embedding_run()
    card = make_card(description="The keypad shows E-21 after the PIN and the bolt stays locked.")
    diagnosis = problem_card_diagnose(card_id=card.pk)
    assert diagnosis.layer == 1
    assert case_points().points == {}  # no outcome yet

    order_in_status(OrderStatus.COMPLETED, order=make_order(card=card))
    assert case_points().points == {(LOCAL, "kagiya"): [Point(diagnosis.best_similarity, True)]}
