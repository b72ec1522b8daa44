"""The dispatch admin: every model listed and searchable, the audit log read-only, and actions
that go through the services (with the signed-in user in the audit log)."""

import pytest

from dispatch.models import (
    CardStatus,
    Invoice,
    OrderEvent,
    OrderStatus,
    ProblemCard,
    ServiceOrder,
)
from tests.dispatch.factories import make_card, make_item, make_order, order_in_status
from tests.dispatch.test_billing import add

pytestmark = pytest.mark.django_db

MODELS = [
    "problemcard",
    "diagnosisrecord",
    "problemcardphoto",
    "technician",
    "technicianskill",
    "serviceorder",
    "orderevent",
    "quoteitem",
    "orderline",
    "settlement",
    "invoice",
    "casefeedback",
]


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(
        django_user_model.objects.create_superuser("root", "root@kioku.invalid", "pw-123456789")
    )
    return client


def run_action(client, model: str, action: str, ids: list[int]):
    return client.post(
        f"/admin/dispatch/{model}/",
        {"action": action, "_selected_action": [str(pk) for pk in ids]},
        follow=True,
    )


@pytest.mark.parametrize("model", MODELS)
def test_every_dispatch_model_has_a_searchable_list(admin_client, model):
    order = order_in_status(OrderStatus.ASSIGNED)
    assert order.pk
    response = admin_client.get(f"/admin/dispatch/{model}/?q=Lin")
    assert response.status_code == 200


def test_an_order_page_shows_its_lines_totals_and_audit_log(admin_client):
    make_item("SVC-CALL", "Service call", "600.00")
    order = make_order()
    add(order, "SVC-CALL")
    html = admin_client.get(f"/admin/dispatch/serviceorder/{order.pk}/change/").content.decode()
    assert "Service call" in html and "= 630.00" in html and "Line added" in html


def test_the_audit_log_cannot_be_edited_or_deleted(admin_client):
    event = make_order().events.get()
    assert admin_client.get("/admin/dispatch/orderevent/add/").status_code == 403
    assert admin_client.post(f"/admin/dispatch/orderevent/{event.pk}/delete/").status_code == 403
    admin_client.post(f"/admin/dispatch/orderevent/{event.pk}/change/", {"note": "Edited."})
    assert OrderEvent.objects.get().note == event.note


def test_dispatching_cards_from_the_admin_logs_the_user(admin_client):
    card = make_card()
    ProblemCard.objects.filter(pk=card.pk).update(address="No. 7, Xinyi Rd")
    homeless = make_card()
    html = run_action(admin_client, "problemcard", "dispatch", [card.pk, homeless.pk])
    assert "An address is required" in html.content.decode()
    order = ServiceOrder.objects.get()
    assert (order.card, order.address) == (card, "No. 7, Xinyi Rd")
    assert order.events.get().actor_label == "root"
    card.refresh_from_db()
    assert card.status == CardStatus.DISPATCHED


def test_cancelling_from_the_admin_goes_through_the_flow(admin_client):
    open_order = make_order()
    done = order_in_status(OrderStatus.COMPLETED, order=make_order(make_card()))
    response = run_action(admin_client, "serviceorder", "cancel", [open_order.pk, done.pk])
    html = response.content.decode()
    assert "Cancelled 1 of 2." in html and "cannot become cancelled" in html
    assert ServiceOrder.objects.get(pk=open_order.pk).status == OrderStatus.CANCELLED
    assert ServiceOrder.objects.get(pk=done.pk).status == OrderStatus.COMPLETED


def test_invoicing_from_the_admin_bills_the_cards_customer(admin_client):
    make_item()
    order = make_order()
    add(order, "SVC-CALL")
    order = order_in_status(OrderStatus.COMPLETED, order=order)
    run_action(admin_client, "serviceorder", "invoice_to_customer", [order.pk])
    invoice = Invoice.objects.get()
    assert (invoice.buyer_name, invoice.issued_by) == ("Chen Mei", "root")


def test_a_misleading_case_is_disabled_from_the_admin(admin_client):
    from dispatch.services import problem_card_resolve

    case = make_card()
    problem_card_resolve(card_id=case.pk, resolution="Replaced the battery holder.")
    open_card = make_card()
    html = run_action(admin_client, "problemcard", "disable_case", [case.pk, open_card.pk])
    assert "not a resolved case" in html.content.decode()  # the open card is refused, shown
    case.refresh_from_db()
    assert not case.is_case_enabled
    assert not ProblemCard.objects.resolved_cases().filter(pk=case.pk).exists()
