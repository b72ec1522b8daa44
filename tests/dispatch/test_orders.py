"""Service orders: the status flow, what each step needs, the audit log, optimistic locking (with
two real connections) and what an order does to its card."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from dispatch.errors import DispatchError
from dispatch.models import CardStatus, OrderEvent, OrderStatus, ProblemCard, ServiceOrder
from dispatch.orders import Actor, order_assign, order_cancel, order_create, order_transition
from dispatch.services import problem_card_resolve
from tests.dispatch.factories import (
    ADDRESS,
    DISPATCHER,
    WORK,
    make_card,
    make_order,
    make_technician,
    order_in_status,
)

pytestmark = pytest.mark.django_db(transaction=True)

S = OrderStatus
# The flow as the issue states it: forward one step at a time, reassigning before anyone set
# off, cancelled from any open state; completed and cancelled are final.
LEGAL = {
    (S.CREATED, S.ASSIGNED),
    (S.CREATED, S.CANCELLED),
    (S.ASSIGNED, S.ASSIGNED),
    (S.ASSIGNED, S.EN_ROUTE),
    (S.ASSIGNED, S.CANCELLED),
    (S.EN_ROUTE, S.ON_SITE),
    (S.EN_ROUTE, S.CANCELLED),
    (S.ON_SITE, S.COMPLETED),
    (S.ON_SITE, S.CANCELLED),
}
EVERY_PAIR = [(before, after) for before in S for after in S]


@pytest.fixture
def lin():
    return make_technician("Lin", areas=["Taipei Da'an"], skills={"kagiya": 4})


def in_half_an_hour():
    return timezone.now() + timedelta(minutes=30)


def step(order, to, **fields):
    """order_transition with what every step may need, overridable."""
    values = {
        "note": "Step.",
        "technician_id": fields.pop("technician").pk if "technician" in fields else None,
        "eta": in_half_an_hour(),
        **WORK,
        **fields,
    }
    return order_transition(
        order_id=order.pk, to=to, version=order.version, actor=DISPATCHER, **values
    )


def error_of(call, *args, **kwargs) -> DispatchError:
    with pytest.raises(DispatchError) as excinfo:
        call(*args, **kwargs)
    return excinfo.value


# --- The status flow ------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), EVERY_PAIR, ids=[f"{b}-{a}" for b, a in EVERY_PAIR])
def test_every_transition_is_allowed_or_refused_as_the_flow_says(before, after, lin):
    order = order_in_status(before, technician=lin)
    events = order.events.count()
    if (before, after) in LEGAL:
        moved = step(order, after, technician=lin)
        assert moved.status == after and moved.version == order.version + 1
        last = OrderEvent.objects.filter(order=order).last()
        assert (last.from_status, last.to_status) == (before, after)
    else:
        error = error_of(step, order, after, technician=lin)
        assert (error.code, error.status) == ("DISPATCH_INVALID_TRANSITION", 409)
        assert error.details["from"] == before and error.details["to"] == after
        unchanged = ServiceOrder.objects.get(pk=order.pk)
        assert (unchanged.status, unchanged.version) == (before, order.version)
        assert unchanged.events.count() == events


def test_an_unknown_status_is_refused_with_the_field():
    error = error_of(step, make_order(), "teleported")
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "to"


# --- What each step needs -------------------------------------------------------------------------


def test_becoming_assigned_needs_a_technician():
    order = make_order()
    error = error_of(step, order, S.ASSIGNED)
    assert (error.code, error.status, error.details["field"]) == (
        "DISPATCH_INVALID_ORDER",
        422,
        "technician_id",
    )
    assert ServiceOrder.objects.get().status == S.CREATED


def test_an_inactive_technician_cannot_be_assigned(lin):
    lin.is_active = False
    lin.save()
    error = error_of(step, make_order(), S.ASSIGNED, technician=lin)
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "technician_id"


def test_an_unknown_technician_is_not_found():
    order = make_order()
    error = error_of(
        order_assign, order_id=order.pk, technician_id=999_999, version=1, actor=DISPATCHER
    )
    assert (error.code, error.status) == ("DISPATCH_NOT_FOUND", 404)


def test_setting_off_needs_an_eta(lin):
    order = make_order()
    order = order_assign(order_id=order.pk, technician_id=lin.pk, version=1, actor=DISPATCHER)
    error = error_of(step, order, S.EN_ROUTE, eta=None)
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "eta"


def test_an_eta_given_at_assignment_is_enough_to_set_off(lin):
    order = make_order()
    eta = in_half_an_hour()
    order = order_assign(
        order_id=order.pk, technician_id=lin.pk, version=1, actor=DISPATCHER, eta=eta
    )
    order = step(order, S.EN_ROUTE, eta=None)
    assert order.status == S.EN_ROUTE and order.eta == eta


@pytest.mark.parametrize("missing", ["work_done", "parts_used"])
def test_completing_needs_the_work_done_and_the_parts(missing):
    order = order_in_status(S.ON_SITE)
    error = error_of(step, order, S.COMPLETED, **{missing: "  "})
    assert (error.code, error.status, error.details["field"]) == (
        "DISPATCH_INVALID_ORDER",
        422,
        missing,
    )
    assert ServiceOrder.objects.get().status == S.ON_SITE
    assert ProblemCard.objects.get().status == CardStatus.DISPATCHED


def test_cancelling_needs_a_reason():
    order = make_order()
    error = error_of(order_cancel, order_id=order.pk, version=1, actor=DISPATCHER, note=" ")
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "note"


def test_a_window_must_end_after_it_starts():
    start = timezone.now() + timedelta(days=1)
    error = error_of(make_order, scheduled_start=start, scheduled_end=start)
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "scheduled_end"
    assert not ServiceOrder.objects.exists()


def test_coordinates_come_in_pairs():
    error = error_of(make_order, latitude=25.03)
    assert error.code == "DISPATCH_INVALID_ORDER" and error.details["field"] == "longitude"


def test_an_order_without_an_address_takes_the_cards():
    card = ProblemCard.objects.get(pk=make_card().pk)
    card.address = "No. 7, Xinyi Rd"
    card.save()
    order = order_create(card_id=card.pk, actor=DISPATCHER)
    assert order.address == "No. 7, Xinyi Rd"


# --- The audit log --------------------------------------------------------------------------------


def test_every_change_is_logged_with_who_when_from_and_to(django_user_model, lin):
    person = django_user_model.objects.create_user("mei")
    before = timezone.now()
    order = order_create(card_id=make_card().pk, address=ADDRESS, actor=Actor.of_user(person))
    order = order_assign(
        order_id=order.pk, technician_id=lin.pk, version=1, actor=Actor(label="api:line-bot")
    )
    order = step(order, S.EN_ROUTE, note="Leaving now.")
    after = timezone.now()

    events = list(order.events.order_by("id"))
    assert [(e.from_status, e.to_status) for e in events] == [
        ("", S.CREATED),
        (S.CREATED, S.ASSIGNED),
        (S.ASSIGNED, S.EN_ROUTE),
    ]
    assert [e.actor_label for e in events] == ["mei", "api:line-bot", "dispatcher"]
    assert events[0].actor == person and events[1].actor is None
    assert events[1].note == "Assigned to Lin."
    assert events[2].note == "Leaving now."
    assert all(before <= e.created_at <= after for e in events)


def test_reassigning_is_logged_with_both_names(lin):
    sato = make_technician("Sato", areas=["Taipei Da'an"], skills={})
    order = order_in_status(S.ASSIGNED, technician=lin)
    order = order_assign(
        order_id=order.pk, technician_id=sato.pk, version=order.version, actor=DISPATCHER
    )
    last = order.events.last()
    assert order.technician == sato
    assert (last.from_status, last.to_status, last.note) == (
        S.ASSIGNED,
        S.ASSIGNED,
        "Reassigned from Lin to Sato.",
    )


def test_a_refused_change_logs_nothing():
    order = make_order()
    error_of(step, order, S.COMPLETED)
    assert [e.to_status for e in order.events.all()] == [S.CREATED]


# --- Optimistic locking ---------------------------------------------------------------------------


def test_a_stale_version_loses_with_the_current_one_in_details(lin):
    order = make_order()
    order_assign(order_id=order.pk, technician_id=lin.pk, version=1, actor=DISPATCHER)
    error = error_of(
        order_assign, order_id=order.pk, technician_id=lin.pk, version=1, actor=DISPATCHER
    )
    assert (error.code, error.status, error.details) == ("DISPATCH_CONFLICT", 409, {"version": 2})


def _in_thread(work):
    """Run `work` in a thread with its own database connection; its result or its error."""
    outcome = {}

    def run():
        try:
            outcome["result"] = work()
        except DispatchError as error:
            outcome["result"] = error.code
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def test_two_dispatchers_assigning_at_once_one_wins_and_the_other_gets_a_conflict(lin):
    sato = make_technician("Sato", areas=["Taipei Da'an"], skills={})
    order = make_order()
    first_assigned, first_may_commit = threading.Event(), threading.Event()
    second_pid = {}

    def first():  # assigns Lin and holds its transaction open
        with transaction.atomic():
            order_assign(
                order_id=order.pk, technician_id=lin.pk, version=1, actor=Actor(label="ana")
            )
            first_assigned.set()
            assert first_may_commit.wait(timeout=30)
        return "assigned"

    def second():  # read version 1 too, and assigns Sato while the first is not committed
        assert first_assigned.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            second_pid["pid"] = cursor.fetchone()[0]
        order_assign(order_id=order.pk, technician_id=sato.pk, version=1, actor=Actor(label="bo"))
        return "assigned"

    first_thread, first_outcome = _in_thread(first)
    second_thread, second_outcome = _in_thread(second)
    deadline = time.monotonic() + 20
    while not ("pid" in second_pid and _waits_for_a_lock(second_pid["pid"])):
        assert time.monotonic() < deadline, "the second dispatcher never waited for the lock"
        time.sleep(0.02)
    first_may_commit.set()
    first_thread.join(timeout=30)
    second_thread.join(timeout=30)

    assert first_outcome == {"result": "assigned"}
    assert second_outcome == {"result": "DISPATCH_CONFLICT"}
    order.refresh_from_db()
    assert (order.technician, order.version) == (lin, 2)
    assert [e.actor_label for e in order.events.filter(to_status=S.ASSIGNED)] == ["ana"]


# --- The card -------------------------------------------------------------------------------------


def test_an_order_dispatches_its_card():
    card = make_card()
    make_order(card)
    card.refresh_from_db()
    assert (card.status, card.version) == (CardStatus.DISPATCHED, 2)


def test_a_resolved_card_cannot_be_dispatched():
    card = make_card()
    problem_card_resolve(card_id=card.pk, resolution="Fixed on the phone.")
    error = error_of(make_order, card)
    assert error.code == "DISPATCH_INVALID_TRANSITION"
    assert not ServiceOrder.objects.exists()


def test_a_card_has_one_open_order_at_a_time():
    card = make_card()
    first = make_order(card)
    error = error_of(make_order, card)
    assert (error.code, error.details["order_id"]) == ("DISPATCH_INVALID_TRANSITION", first.pk)


def test_after_a_cancelled_visit_a_new_order_may_follow():
    card = make_card()
    order_in_status(S.CANCELLED, order=make_order(card))
    card.refresh_from_db()
    assert card.status == CardStatus.DISPATCHED
    assert make_order(card).status == S.CREATED


def test_an_unknown_card_is_not_found():
    error = error_of(order_create, card_id=999_999, address=ADDRESS, actor=DISPATCHER)
    assert (error.code, error.status) == ("DISPATCH_NOT_FOUND", 404)


def test_completing_resolves_the_card_with_the_orders_findings(lin):
    order = order_in_status(S.ON_SITE, technician=lin)
    order = step(
        order, S.COMPLETED, work_done="Replaced the motor.", parts_used="Motor unit MU-3 × 1"
    )
    card = ProblemCard.objects.get(pk=order.card_id)
    assert order.completed_at is not None
    assert card.status == CardStatus.RESOLVED
    assert (card.resolution, card.parts_used, card.resolved_by) == (
        "Replaced the motor.",
        "Motor unit MU-3 × 1",
        lin,
    )


def test_an_order_stays_on_site_when_its_card_cannot_be_resolved():
    order = order_in_status(S.ON_SITE)
    ProblemCard.objects.filter(pk=order.card_id).update(status=CardStatus.CANCELLED)
    error = error_of(step, order, S.COMPLETED)
    assert error.code == "DISPATCH_INVALID_TRANSITION"
    order.refresh_from_db()
    assert (order.status, order.work_done, order.completed_at) == (S.ON_SITE, "", None)
    assert not order.events.filter(to_status=S.COMPLETED).exists()


def test_completing_embeds_an_unembedded_card_before_locking_the_order(monkeypatch):
    """The provider may take seconds: no row lock and no transaction is held while it answers
    (found by bench/load.py), and the case is still written with its vector."""
    import dispatch.services

    order = order_in_status(S.ON_SITE)
    seen: list[bool] = []
    real_provider_for = dispatch.services.embedding_provider_for

    class Spy:
        def __init__(self, provider):
            self.provider = provider

        def embed(self, texts):
            seen.append(connection.in_atomic_block)
            return self.provider.embed(texts)

    monkeypatch.setattr(
        dispatch.services, "embedding_provider_for", lambda space: Spy(real_provider_for(space))
    )
    assert ProblemCard.objects.get(pk=order.card_id).embedding is None
    step(order, S.COMPLETED)
    card = ProblemCard.objects.get(pk=order.card_id)
    assert seen == [False]
    assert card.status == CardStatus.RESOLVED and card.embedding is not None
