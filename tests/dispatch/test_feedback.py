"""Outcome feedback from service orders (dispatch/feedback.py): a completed order's word on the
diagnosis raises or lowers what it cited, once; layer 1 orders passing cases by the boost and
never lets it decide which pass; curators revert and restore signals in the admin."""

import pytest
from django.test import Client

from dispatch.diagnosis import problem_card_diagnose, similar_cases
from dispatch.feedback import case_feedback_apply, order_outcome_signals
from dispatch.models import CaseFeedback, OrderEvent, OrderStatus, ProblemCard, ServiceOrder
from dispatch.orders import order_transition
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.spaces import space_state
from knowledge.models import ChunkFeedback, FeedbackReason, KnowledgeChunk, RevertCause
from tests.dispatch.factories import (
    DISPATCHER,
    WORK,
    make_card,
    make_case,
    make_fingerprint_manual,
    make_order,
    order_in_status,
)

pytestmark = pytest.mark.django_db(transaction=True)

E21_AGAIN = "I typed my PIN, the screen says E-21, and the bolt stays locked."


@pytest.fixture
def cases(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    found = {
        "e21": make_case(resolution="Re-seated the motor cable.", error_code="E-21"),
        "e21_other": make_case(
            resolution="Adjusted the strike plate.",
            description="Keypad shows E-21 after the PIN; the bolt grinds and stays out.",
        ),
        "battery": make_case(
            symptom="battery",
            description="The lock beeps and the low battery icon flashes with new batteries.",
            resolution="Cleaned corroded battery contacts.",
        ),
    }
    embedding_run()
    return found


def boost(card: ProblemCard) -> float:
    return ProblemCard.objects.get(pk=card.pk).feedback_boost


def diagnosed_order_on_site(description: str = E21_AGAIN) -> tuple[ServiceOrder, list[int]]:
    """A new card diagnosed by layer 1 and its order on site; the cases the diagnosis cited."""
    card = make_card(description=description)
    diagnosis = problem_card_diagnose(card_id=card.pk)
    assert diagnosis.layer == 1
    order = order_in_status(OrderStatus.ON_SITE, order=make_order(card))
    return order, [case.card_id for case in diagnosis.cases]


def complete(order: ServiceOrder, **fields: object) -> ServiceOrder:
    return order_transition(
        order_id=order.pk,
        to=OrderStatus.COMPLETED,
        version=order.version,
        actor=DISPATCHER,
        **{**WORK, **fields},
    )


def test_a_fix_that_matched_the_diagnosis_raises_the_cases_it_cited(cases, settings):
    order, cited = diagnosed_order_on_site()
    order = complete(order, diagnosis_matched=True)
    assert order.diagnosis_matched is True
    assert {card_id: boost(ProblemCard(pk=card_id)) for card_id in cited} == dict.fromkeys(
        cited, settings.KIOKU_FEEDBACK_STEP
    )
    signals = CaseFeedback.objects.filter(origin_ref=f"order:{order.pk}")
    assert sorted(signals.values_list("card_id", flat=True)) == sorted(cited)
    assert set(signals.values_list("reason", flat=True)) == {FeedbackReason.ORDER_FIX_MATCHED}
    uncited = ProblemCard.objects.exclude(pk__in=cited).values_list("feedback_boost", flat=True)
    assert set(uncited) == {0.0}
    assert "Fix matched the diagnosis." in OrderEvent.objects.filter(order=order).last().note


def test_a_wrong_diagnosis_lowers_the_cases_it_cited(cases, settings):
    order, cited = diagnosed_order_on_site()
    complete(order, diagnosis_matched=False)
    assert {boost(ProblemCard(pk=card_id)) for card_id in cited} == {-settings.KIOKU_FEEDBACK_STEP}
    assert set(CaseFeedback.objects.values_list("reason", flat=True)) == {
        FeedbackReason.DIAGNOSIS_WRONG
    }


def test_an_order_that_does_not_say_leaves_the_cases_alone(cases):
    order, _ = diagnosed_order_on_site()
    order = complete(order)
    assert order.diagnosis_matched is None
    assert not CaseFeedback.objects.exists()
    assert set(ProblemCard.objects.values_list("feedback_boost", flat=True)) == {0.0}


def test_an_orders_signals_count_once(cases, settings):
    order, cited = diagnosed_order_on_site()
    order = complete(order, diagnosis_matched=True)
    card = ProblemCard.objects.get(pk=order.card_id)
    assert order_outcome_signals(order=order, diagnosis=card.diagnosis) == 0
    assert CaseFeedback.objects.count() == len(cited)
    assert boost(ProblemCard(pk=cited[0])) == settings.KIOKU_FEEDBACK_STEP


def test_a_fix_that_matched_a_manuals_answer_raises_the_passages_it_cited(cases, settings):
    make_fingerprint_manual()
    embedding_run()
    # No case passes: the manuals answer.
    settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {
        model: 0.99 for model in settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE
    }
    card = make_card(symptom="keypad", description="The fingerprint reader ignores my finger.")
    diagnosis = problem_card_diagnose(card_id=card.pk)
    assert diagnosis.layer == 2
    cited = [passage["chunk_id"] for passage in diagnosis.passages if passage["cited"]]
    assert cited
    order = order_in_status(OrderStatus.ON_SITE, order=make_order(card))
    complete(order, diagnosis_matched=True)
    boosts = dict(KnowledgeChunk.objects.values_list("pk", "feedback_boost"))
    assert {boosts[chunk_id] for chunk_id in cited} == {settings.KIOKU_FEEDBACK_STEP}
    assert ChunkFeedback.objects.filter(origin_ref=f"order:{order.pk}").count() == len(cited)
    assert not CaseFeedback.objects.exists()


# --- Layer 1 ranking ------------------------------------------------------------------------------


def layer_one(card: ProblemCard, threshold: float, **options: bool):
    card.refresh_from_db()
    space = space_state().active
    return similar_cases(
        card=card, vector=card.stored_vector(space), space=space, threshold=threshold, **options
    )


def test_a_raised_case_ranks_first_among_passing_cases_and_as_before_without_feedback(
    cases, settings
):
    card = make_card(description=E21_AGAIN)
    embedding_run()
    before, _ = layer_one(card, threshold=-1.0)
    assert len(before) >= 2
    runner_up = before[1]
    settings.KIOKU_CASE_FEEDBACK_WEIGHT = (before[0].score - runner_up.score + 0.001) / (
        settings.KIOKU_FEEDBACK_STEP
    )
    case_feedback_apply(
        card_ids=[runner_up.card_id], reason=FeedbackReason.ORDER_FIX_MATCHED, origin_ref="order:1"
    )
    after, _ = layer_one(card, threshold=-1.0)
    assert after[0].card_id == runner_up.card_id
    assert after[0].feedback_boost == settings.KIOKU_FEEDBACK_STEP
    unboosted, _ = layer_one(card, threshold=-1.0, use_feedback=False)
    assert [case.card_id for case in unboosted] == [case.card_id for case in before]


def test_a_boost_never_lets_a_case_below_the_threshold_pass(cases, settings):
    card = make_card(description=E21_AGAIN)
    embedding_run()
    ranked, best = layer_one(card, threshold=-1.0)
    weakest = min(ranked, key=lambda case: case.similarity)
    assert not weakest.same_code
    threshold = weakest.similarity + 1e-6  # every case but the weakest passes
    settings.KIOKU_CASE_FEEDBACK_WEIGHT = 100.0
    settings.KIOKU_FEEDBACK_MAX_BOOST = 1.0
    case_feedback_apply(
        card_ids=[weakest.card_id], reason=FeedbackReason.ORDER_FIX_MATCHED, origin_ref="order:1"
    )
    passing, best_after = layer_one(card, threshold=threshold)
    assert weakest.card_id not in [case.card_id for case in passing]
    assert len(passing) == len(ranked) - 1 and best_after == best


def test_a_lowered_case_still_passes_the_threshold(cases, settings):
    card = make_card(description=E21_AGAIN)
    embedding_run()
    ranked, _ = layer_one(card, threshold=-1.0)
    top = ranked[0]
    settings.KIOKU_CASE_FEEDBACK_WEIGHT = 100.0
    case_feedback_apply(
        card_ids=[top.card_id], reason=FeedbackReason.DIAGNOSIS_WRONG, origin_ref="order:1"
    )
    passing, _ = layer_one(card, threshold=-1.0)
    assert [case.card_id for case in passing][-1] == top.card_id  # last, not gone


# --- Admin, API, page -----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Client, django_user_model) -> Client:
    client.force_login(django_user_model.objects.create_superuser("root", "r@kioku.invalid", "pw"))
    return client


def test_reverting_a_case_signal_in_the_admin_restores_the_boost_before_it(
    cases, settings, admin_client
):
    case = cases["e21"]
    case_feedback_apply(
        card_ids=[case.pk], reason=FeedbackReason.ORDER_FIX_MATCHED, origin_ref="order:1"
    )
    case_feedback_apply(
        card_ids=[case.pk], reason=FeedbackReason.DIAGNOSIS_WRONG, origin_ref="order:2"
    )
    assert boost(case) == 0.0
    wrong = CaseFeedback.objects.get(origin_ref="order:2")
    response = admin_client.post(
        "/admin/dispatch/casefeedback/",
        {"action": "revert", "_selected_action": [str(wrong.pk)]},
        follow=True,
    )
    assert "Reverted 1 signal(s)" in response.content.decode()
    assert boost(case) == settings.KIOKU_FEEDBACK_STEP
    wrong.refresh_from_db()
    assert (wrong.revert_cause, wrong.reverted_by) == (RevertCause.CURATOR, "root")
    page = admin_client.get(f"/admin/dispatch/problemcard/{case.pk}/change/").content.decode()
    assert "order:2" in page and "+0.25" in page
    admin_client.post(
        "/admin/dispatch/casefeedback/",
        {"action": "restore", "_selected_action": [str(wrong.pk)]},
    )
    assert boost(case) == 0.0


def test_curators_may_revert_signals_and_dispatchers_may_not(make_user):
    curator, dispatcher = make_user("cur", "curator"), make_user("disp", "dispatcher")
    for perm in ("dispatch.change_casefeedback", "knowledge.change_chunkfeedback"):
        assert curator.has_perm(perm) and not dispatcher.has_perm(perm)


def test_the_case_page_shows_its_boost_and_signals(cases, curator):
    case = cases["e21"]
    case_feedback_apply(
        card_ids=[case.pk], reason=FeedbackReason.DIAGNOSIS_WRONG, origin_ref="order:7"
    )
    html = curator.get(f"/dispatch/cases/{case.pk}/").content.decode()
    assert 'id="case-feedback-boost">-0.25' in html and "order:7" in html


def test_the_api_takes_diagnosis_matched_on_completion(cases, api):
    order, cited = diagnosed_order_on_site()
    response = api.post(
        f"/api/v1/service-orders/{order.pk}/transition",
        json={"to": "completed", "version": order.version, "diagnosis_matched": True, **WORK},
    )
    assert response.status_code == 200, response.content
    assert response.json()["diagnosis_matched"] is True
    assert CaseFeedback.objects.filter(card_id__in=cited).count() == len(cited)


def test_the_api_refuses_a_diagnosis_matched_that_is_not_a_boolean(cases, api):
    order, _ = diagnosed_order_on_site()
    response = api.post(
        f"/api/v1/service-orders/{order.pk}/transition",
        json={"to": "completed", "version": order.version, "diagnosis_matched": "yes", **WORK},
    )
    assert response.status_code == 422
    assert not CaseFeedback.objects.exists()


def test_the_order_page_completes_with_a_wrong_diagnosis(cases, curator, settings):
    order, cited = diagnosed_order_on_site()
    page = curator.get(f"/dispatch/orders/{order.pk}/").content.decode()
    assert 'name="diagnosis_matched"' in page
    curator.post(
        f"/dispatch/orders/{order.pk}/step/",
        {"to": "completed", "version": order.version, "diagnosis_matched": "false", **WORK},
    )
    order.refresh_from_db()
    assert (order.status, order.diagnosis_matched) == (OrderStatus.COMPLETED, False)
    assert boost(ProblemCard(pk=cited[0])) == -settings.KIOKU_FEEDBACK_STEP
