"""The Dispatch board and the order page, and the whole flow in a browser: a new card, its
diagnosis, an order, assignment, the visit, completion, the quote and the invoice."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from dispatch.models import CardStatus, Invoice, OrderStatus, ProblemCard, QuoteItem, ServiceOrder
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from tests.dispatch.factories import make_card, make_case, make_technician
from tests.helpers import visible_text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    pipeline_resume()


def test_the_board_shows_orders_in_their_columns_and_todays_load(curator):
    make_technician("Lin", areas=["Taipei Da'an"], skills={"kagiya": 5}, capacity=3)
    card = make_card()
    response = curator.post(
        f"/dispatch/cases/{card.pk}/order/", {"address": "No. 1, Da'an Rd"}, follow=True
    )
    order = ServiceOrder.objects.get()
    assert response.redirect_chain[-1][0] == f"/dispatch/orders/{order.pk}/"
    board = visible_text(curator.get("/dispatch/orders/"))
    assert "Created (1)" in board and f"Order #{order.pk}" in board
    assert re.search(r"Lin\s*Taipei Da'an\s*0 / 3", board)  # the load row
    assert ProblemCard.objects.get().status == CardStatus.DISPATCHED


def test_an_illegal_step_is_refused_on_the_page_with_its_code(curator):
    order_page = curator.post(
        f"/dispatch/cases/{make_card().pk}/order/", {"address": "Da'an"}, follow=True
    )
    order = ServiceOrder.objects.get()
    assert "Assign" in visible_text(order_page)
    response = curator.post(
        f"/dispatch/orders/{order.pk}/step/", {"to": "completed", "version": order.version}
    )
    assert response.status_code == 409
    assert "DISPATCH_INVALID_TRANSITION" in visible_text(response)
    assert ServiceOrder.objects.get().status == OrderStatus.CREATED


def test_an_agent_may_look_but_not_move_orders(agent):
    card = make_card()
    order = ServiceOrder.objects.create(card=card, address="Da'an")
    assert agent.get("/dispatch/orders/").status_code == 200
    assert agent.get(f"/dispatch/orders/{order.pk}/").status_code == 200
    step = {"to": "cancelled", "version": 1, "note": "x"}
    assert agent.post(f"/dispatch/orders/{order.pk}/step/", step).status_code == 403
    assert agent.post(f"/dispatch/cases/{card.pk}/order/").status_code == 403


@pytest.mark.browser
def test_a_dispatcher_takes_a_fault_from_report_to_invoice(logged_in_page, screenshot):
    technician = make_technician("Lin Chih-hao", areas=["Taipei Da'an"], skills={"kagiya": 5})
    make_case(resolution="Re-seated the motor cable behind the escutcheon.", error_code="E-21")
    embedding_run()
    QuoteItem.objects.create(code="VISIT", name="Call-out and diagnosis", unit_price="800.00")
    QuoteItem.objects.create(code="ADJUST", name="Door and strike adjustment", unit_price="600.00")
    page = logged_in_page

    # Report the fault: the diagnosis answers with the similar resolved case.
    page.goto("/dispatch/cases/new/")
    page.fill("#id_customer_name", "Chen Mei")
    page.fill("#id_service_area", "Taipei Da'an")
    page.fill("#id_brand", "Kagiya")
    page.fill("#id_lock_model", "KG-200")
    page.select_option("#id_symptom", "error_code")
    page.fill("#id_error_code", "e21")
    page.fill("#id_description", "The keypad shows E-21 and the bolt stops halfway.")
    page.click("#card-form button[type=submit]")
    expect(page.locator(".diagnosis")).to_contain_text("Layer 1: similar resolved case")
    expect(page.locator(".cases-found")).to_contain_text("Re-seated the motor cable")
    screenshot(page, "dispatch_card_diagnosis")

    # Send a technician, assign the suggested one, visit, complete.
    page.fill("#order-new-form input[name=address]", "No. 1, Section 2, Heping E. Rd")
    page.click("#order-new-form button")
    expect(page.locator("#order-status")).to_have_text("Created")
    expect(page.locator("#step-assigned select")).to_contain_text("Lin Chih-hao")
    page.click("#step-assigned button")
    expect(page.locator("#order-status")).to_have_text("Assigned")
    page.fill("#step-en_route input[name=eta]", "2026-12-06T10:30")
    page.click("#step-en_route button")
    expect(page.locator("#order-status")).to_have_text("En route")
    page.click("#step-on_site button")
    expect(page.locator("#order-status")).to_have_text("On site")
    page.select_option("#line-form select", "VISIT")
    page.click("#line-form button")
    page.select_option("#line-form select", "ADJUST")
    page.fill("#line-form input[name=quantity]", "1.5")
    page.click("#line-form button")
    expect(page.locator("#subtotal")).to_have_text("1700.00")
    expect(page.locator("#total")).to_have_text("1785.00")
    page.fill("#step-completed textarea", "Raised the strike plate 2 mm; 20 locks without E-21.")
    page.fill("#step-completed input[name=parts_used]", "none")
    page.select_option("#step-completed select[name=diagnosis_matched]", "true")
    page.click("#step-completed button")
    expect(page.locator("#order-status")).to_have_text("Completed")
    expect(page.locator("#diagnosis-matched")).to_contain_text("yes")

    # Invoice it; the card is now a resolved case with the visit's findings.
    page.fill("#id_buyer_tax_id", "04595257")
    page.click("#invoice-form button")
    expect(page.locator("#invoice")).to_contain_text("INV-")
    expect(page.locator("#invoice")).to_contain_text("1785.00")
    screenshot(page, "dispatch_order_invoiced")
    invoice = Invoice.objects.get()
    assert (invoice.subtotal, invoice.tax, invoice.total) == (
        Decimal("1700.00"),
        Decimal("85.00"),
        Decimal("1785.00"),
    )
    card = ProblemCard.objects.get(status=CardStatus.RESOLVED, resolution__contains="strike plate")
    assert card.resolved_by == technician
    # The fix matched the diagnosis: the case it cited ranks a little higher from now on.
    assert ProblemCard.objects.get(resolution__startswith="Re-seated").feedback_boost > 0
    events = list(ServiceOrder.objects.get().events.all())
    steps = [e.to_status for e in events if e.from_status != e.to_status]
    assert steps == ["created", "assigned", "en_route", "on_site", "completed"]
    assert {e.actor_label for e in events} == {"curator"}


def test_cards_waiting_for_a_technician_lead_the_board_escalated_first(curator, settings):
    older = make_card(description="The bolt grinds when it locks.")
    escalated = make_card(brand="Nobody", symptom="damage", description="The handle is bent.")
    settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {
        **settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE,
        "local-hash-v1": 0.99,
    }
    from dispatch.diagnosis import problem_card_diagnose

    assert problem_card_diagnose(card_id=escalated.pk).layer == 3
    dispatched = make_card(description="Keypad dead.")
    ServiceOrder.objects.create(card=dispatched, address="Da'an")
    cancelled_only = make_card(description="Beeps at night.")
    ServiceOrder.objects.create(card=cancelled_only, address="Da'an", status=OrderStatus.CANCELLED)

    board = curator.get("/dispatch/orders/").content.decode()
    assert "Waiting for a technician <span" in board
    waiting = re.findall(r'id="card-(\d+)"', board)
    assert waiting == [str(escalated.pk), str(older.pk), str(cancelled_only.pk)]
    assert board.count("escalated</span>") == 1
