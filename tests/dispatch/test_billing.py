"""Quotes and reconciliation: lines with price snapshots, Decimal totals and tax rounding,
frozen lines, one settlement, one invoice with a sequence number, tax-ID checksums."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from dispatch.billing import (
    INVOICE_SEQUENCE,
    order_invoice,
    order_line_add,
    order_line_remove,
    order_settle,
    order_totals,
    tax_id_valid,
)
from dispatch.errors import DispatchError
from dispatch.models import Invoice, OrderLine, OrderStatus, QuoteItem, Settlement
from tests.dispatch.factories import (
    DISPATCHER,
    make_item,
    make_order,
    make_technician,
    order_in_status,
)

pytestmark = pytest.mark.django_db


def error_of(call, **kwargs) -> DispatchError:
    with pytest.raises(DispatchError) as excinfo:
        call(**kwargs)
    return excinfo.value


def add(order, code, quantity="1"):
    return order_line_add(order_id=order.pk, item_code=code, quantity=quantity, actor=DISPATCHER)


def completed_with(*lines: tuple[str, str, str]):
    """A completed order quoted with (code, unit price, quantity) lines."""
    order = make_order()
    for code, price, quantity in lines:
        if not QuoteItem.objects.filter(code=code).exists():
            make_item(code, f"Item {code}", price)
        add(order, code, quantity)
    return order_in_status(OrderStatus.COMPLETED, order=order)


# --- Lines and totals -----------------------------------------------------------------------------


def test_a_line_keeps_the_price_it_was_quoted_at():
    item = make_item("SVC-CALL", "Service call", "600.00")
    order = make_order()
    line = add(order, "SVC-CALL", "2")
    item.unit_price = Decimal("800.00")
    item.save()
    line.refresh_from_db()
    assert (line.description, line.unit_price, line.amount) == (
        "Service call",
        Decimal("600.00"),
        Decimal("1200.00"),
    )
    assert order_totals(order=order).subtotal == Decimal("1200.00")


def test_the_tax_is_rounded_half_up_to_the_cent(settings):
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    make_item("SCREW", "Screw", "0.10")
    order = make_order()
    add(order, "SCREW")
    totals = order_totals(order=order)
    # 0.10 × 5 % = 0.005: half-up makes it a cent (banker's rounding would make it 0.00).
    assert (totals.subtotal, totals.tax, totals.total) == (
        Decimal("0.10"),
        Decimal("0.01"),
        Decimal("0.11"),
    )


def test_totals_of_several_lines_are_exact_decimals(settings):
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    make_item("SVC-CALL", "Service call", "600.00")
    make_item("BATT", "Battery set", "129.90")
    make_item("LUBE", "Lubricant", "0.33")
    order = make_order()
    add(order, "SVC-CALL")
    add(order, "BATT", "3")
    line = add(order, "LUBE", "1.5")  # 0.495 → 0.50
    totals = order_totals(order=order)
    assert line.amount == Decimal("0.50")
    # 600.00 + 389.70 + 0.50 = 990.20; tax 49.51; total 1,039.71.
    assert totals.subtotal == Decimal("990.20")
    assert totals.tax == Decimal("49.51")
    assert totals.total == totals.subtotal + totals.tax == Decimal("1039.71")
    assert all(isinstance(value, Decimal) for value in vars(totals).values())


def test_an_order_without_lines_totals_zero():
    totals = order_totals(order=make_order())
    assert (totals.subtotal, totals.tax, totals.total) == (Decimal("0.00"),) * 3


@pytest.mark.parametrize("quantity", ["0", "-1", "1.005", "abc", "1000000"])
def test_a_bad_quantity_is_refused(quantity):
    make_item()
    order = make_order()
    error = error_of(
        order_line_add, order_id=order.pk, item_code="SVC-CALL", quantity=quantity, actor=DISPATCHER
    )
    assert (error.code, error.details["field"]) == ("DISPATCH_INVALID_ORDER", "quantity")
    assert not OrderLine.objects.exists()


def test_an_inactive_or_unknown_item_cannot_be_quoted():
    QuoteItem.objects.create(code="OLD", name="Old part", unit_price="10.00", is_active=False)
    order = make_order()
    for code in ["OLD", "NOPE"]:
        error = error_of(
            order_line_add, order_id=order.pk, item_code=code, quantity=1, actor=DISPATCHER
        )
        assert (error.code, error.details["field"]) == ("DISPATCH_INVALID_ORDER", "item_code")


def test_adding_and_removing_lines_is_logged():
    make_item()
    order = make_order()
    line = add(order, "SVC-CALL", "2")
    order_line_remove(order_id=order.pk, line_id=line.pk, actor=DISPATCHER)
    notes = [event.note for event in order.events.all()][1:]
    assert notes == [
        "Line added: SVC-CALL Service call × 2 at 600.00 = 1200.00.",
        "Line removed: SVC-CALL Service call × 2.00 = 1200.00.",
    ]
    assert not OrderLine.objects.exists()


@pytest.mark.parametrize("status", [OrderStatus.COMPLETED, OrderStatus.CANCELLED])
def test_the_lines_of_a_finished_order_are_frozen(status):
    make_item()
    order = make_order()
    line = add(order, "SVC-CALL")
    order = order_in_status(status, order=order)

    added = error_of(
        order_line_add, order_id=order.pk, item_code="SVC-CALL", quantity=1, actor=DISPATCHER
    )
    removed = error_of(order_line_remove, order_id=order.pk, line_id=line.pk, actor=DISPATCHER)
    assert (added.code, added.status) == ("DISPATCH_ORDER_FROZEN", 409)
    assert removed.code == "DISPATCH_ORDER_FROZEN"
    assert list(OrderLine.objects.all()) == [line]


# --- Settlement -----------------------------------------------------------------------------------


def test_a_share_of_the_subtotal_is_settled_to_the_technician():
    lin = make_technician("Lin", areas=[], skills={})
    order = make_order()
    make_item("REPAIR", "Repair", "1234.56")
    add(order, "REPAIR")
    order = order_in_status(OrderStatus.COMPLETED, order=order, technician=lin)
    settlement = order_settle(order_id=order.pk, share_percent="40", actor=DISPATCHER)
    # 1,234.56 × 40 % = 493.824 → 493.82 (the tax is not shared).
    assert (settlement.technician, settlement.basis, settlement.amount) == (
        lin,
        "share",
        Decimal("493.82"),
    )
    assert settlement.settled_by == "dispatcher"
    assert order.events.last().note == "Settled: 493.82 to Lin (40 % of 1234.56)."


def test_a_fixed_fee_is_settled_as_given():
    order = completed_with(("SVC-CALL", "600.00", "1"))
    settlement = order_settle(order_id=order.pk, fee=Decimal("350.5"), actor=DISPATCHER)
    assert (settlement.basis, settlement.share_percent, settlement.amount) == (
        "fee",
        None,
        Decimal("350.50"),
    )


def test_an_order_is_settled_once():
    order = completed_with(("SVC-CALL", "600.00", "1"))
    order_settle(order_id=order.pk, fee="300", actor=DISPATCHER)
    error = error_of(order_settle, order_id=order.pk, share_percent="50", actor=DISPATCHER)
    assert (error.code, error.status) == ("DISPATCH_ALREADY_SETTLED", 409)
    assert Settlement.objects.get().amount == Decimal("300.00")


def test_an_open_order_cannot_be_settled():
    order = order_in_status(OrderStatus.ON_SITE)
    error = error_of(order_settle, order_id=order.pk, fee="300", actor=DISPATCHER)
    assert (error.code, error.status) == ("DISPATCH_ORDER_NOT_COMPLETED", 409)


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({}, "share_percent"),
        ({"share_percent": "40", "fee": "100"}, "share_percent"),
        ({"share_percent": "0"}, "share_percent"),
        ({"share_percent": "100.01"}, "share_percent"),
        ({"fee": "-1"}, "fee"),
        ({"fee": "1.001"}, "fee"),
    ],
)
def test_settlement_terms_out_of_range_are_refused(terms, field):
    order = completed_with(("SVC-CALL", "600.00", "1"))
    error = error_of(order_settle, order_id=order.pk, actor=DISPATCHER, **terms)
    assert (error.code, error.details["field"]) == ("DISPATCH_INVALID_SETTLEMENT", field)
    assert not Settlement.objects.exists()


# --- Invoices -------------------------------------------------------------------------------------


def invoice(order, **fields):
    values = {"buyer_name": "Chen Mei", "actor": DISPATCHER, **fields}
    return order_invoice(order_id=order.pk, **values)


def test_an_invoice_carries_the_totals_and_a_number_from_the_sequence(settings):
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    order = completed_with(("SVC-CALL", "600.00", "1"), ("SCREW", "0.10", "1"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT last_value, is_called FROM {INVOICE_SEQUENCE}")
        last, called = cursor.fetchone()
    expected = last + 1 if called else last

    issued = invoice(order, buyer_tax_id="04595257", issued_on=date(2026, 12, 24))

    assert issued.number == f"INV-2026-{expected:06d}"
    assert (issued.subtotal, issued.tax_rate, issued.tax, issued.total) == (
        Decimal("600.10"),
        Decimal("0.05"),
        Decimal("30.01"),  # 30.005 half-up
        Decimal("630.11"),
    )
    assert (issued.buyer_name, issued.buyer_tax_id, issued.issued_by) == (
        "Chen Mei",
        "04595257",
        "dispatcher",
    )


def test_invoice_numbers_follow_the_sequence_and_never_repeat():
    numbers = [invoice(completed_with(("SVC-CALL", "600.00", "1"))).number for _ in range(3)]
    assert all(re.fullmatch(r"INV-\d{4}-\d{6,}", number) for number in numbers)
    sequence = [int(number.rsplit("-", 1)[1]) for number in numbers]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3
    assert sequence[2] - sequence[0] == 2


def test_an_order_is_invoiced_once():
    order = completed_with(("SVC-CALL", "600.00", "1"))
    first = invoice(order)
    error = error_of(order_invoice, order_id=order.pk, buyer_name="Chen Mei", actor=DISPATCHER)
    assert (error.code, error.status) == ("DISPATCH_ALREADY_INVOICED", 409)
    assert list(Invoice.objects.all()) == [first]


def test_only_a_completed_order_is_invoiced():
    make_item()
    order = make_order()
    add(order, "SVC-CALL")
    error = error_of(order_invoice, order_id=order.pk, buyer_name="Chen Mei", actor=DISPATCHER)
    assert error.code == "DISPATCH_ORDER_NOT_COMPLETED"
    assert not Invoice.objects.exists()


def test_an_order_without_lines_has_nothing_to_invoice():
    order = order_in_status(OrderStatus.COMPLETED)
    error = error_of(order_invoice, order_id=order.pk, buyer_name="Chen Mei", actor=DISPATCHER)
    assert (error.code, error.details["field"]) == ("DISPATCH_INVALID_INVOICE", "lines")


def test_an_invoice_needs_a_buyer():
    order = completed_with(("SVC-CALL", "600.00", "1"))
    error = error_of(order_invoice, order_id=order.pk, buyer_name="  ", actor=DISPATCHER)
    assert (error.code, error.details["field"]) == ("DISPATCH_INVALID_INVOICE", "buyer_name")


def test_a_buyer_tax_id_failing_its_checksum_is_refused():
    order = completed_with(("SVC-CALL", "600.00", "1"))
    error = error_of(
        order_invoice,
        order_id=order.pk,
        buyer_name="Kagiya Ltd",
        buyer_tax_id="04595258",
        actor=DISPATCHER,
    )
    assert (error.code, error.status) == ("DISPATCH_INVALID_TAX_ID", 422)
    assert not Invoice.objects.exists()


def test_an_invoiced_order_keeps_its_invoices_rate(settings):
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    order = completed_with(("SVC-CALL", "600.00", "1"))
    invoice(order)
    settings.KIOKU_TAX_RATE = Decimal("0.10")
    order.refresh_from_db()
    totals = order_totals(order=order)
    assert (totals.tax_rate, totals.tax, totals.total) == (
        Decimal("0.05"),
        Decimal("30.00"),
        Decimal("630.00"),
    )


# --- Tax IDs (統一編號) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tax_id",
    [
        "04595257",  # digit sums 40
        "10458575",  # 7th digit 7, its 28 counted as 10: 30
        "10458574",  # 7th digit 7: 29, and 29 + 1 = 30 (28 may count as 1 or 0)
        "22099131",  # 30
        "20000025",  # 15: divisible by 5, valid since the 2023 rule (by 10 before)
    ],
)
def test_well_formed_tax_ids_pass(tax_id):
    assert tax_id_valid(tax_id)


@pytest.mark.parametrize(
    "tax_id",
    [
        "04595258",  # 41
        "04595256",  # 39: + 1 would do, but only when the 7th digit is 7
        "1234567",
        "123456789",
        "0459525a",
        "０４５９５２５７",  # full-width digits
        "",
    ],
)
def test_malformed_tax_ids_fail(tax_id):
    assert not tax_id_valid(tax_id)
