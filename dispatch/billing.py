"""Quotes and reconciliation of service orders: lines, totals, the technician's settlement and the
invoice. Money is `Decimal` throughout and each write is one transaction.

Rounding (one rule, here): a line's amount is quantity × unit price rounded half-up to the cent;
the subtotal is the sum of the line amounts; the tax is subtotal × KIOKU_TAX_RATE rounded half-up
to the cent (ROUND_HALF_UP: 0.005 → 0.01); the total is subtotal + tax (the invoice table checks
that sum). A settlement by share is subtotal × percent / 100, rounded the same way: tax is not
the technician's to share."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from dispatch.errors import (
    DISPATCH_ALREADY_INVOICED,
    DISPATCH_ALREADY_SETTLED,
    DISPATCH_INVALID_INVOICE,
    DISPATCH_INVALID_ORDER,
    DISPATCH_INVALID_SETTLEMENT,
    DISPATCH_INVALID_TAX_ID,
    DISPATCH_NOT_FOUND,
    DISPATCH_ORDER_FROZEN,
    DISPATCH_ORDER_NOT_COMPLETED,
    DispatchError,
)
from dispatch.models import (
    Invoice,
    OrderEvent,
    OrderLine,
    OrderStatus,
    QuoteItem,
    ServiceOrder,
    Settlement,
)
from dispatch.orders import Actor, order_locked

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")
# The columns' bounds: numeric(12, 2) for money, numeric(8, 2) for quantities.
MAX_MONEY = Decimal("9999999999.99")
MAX_QUANTITY = Decimal("999999.99")
# Holds the last invoice number handed out (dispatch migration 0002). nextval() is not rolled
# back, so an invoice whose transaction fails leaves a gap in the numbers; never a duplicate.
INVOICE_SEQUENCE = "dispatch_invoice_number_seq"
# Orders whose lines are final: the work is done (or called off).
FROZEN_STATUSES = (OrderStatus.COMPLETED, OrderStatus.CANCELLED)


def money(value: Decimal) -> Decimal:
    """`value` rounded half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


def totals_of(amounts: list[Decimal], tax_rate: Decimal) -> Totals:
    """The module's rounding rule over line amounts. The rate is shown with the invoice column's
    four places (0.05 → 0.0500; KIOKU_TAX_RATE has no more)."""
    tax_rate = tax_rate.quantize(RATE_PLACES)
    subtotal = money(sum(amounts, Decimal("0")))
    tax = money(subtotal * tax_rate)
    return Totals(subtotal=subtotal, tax_rate=tax_rate, tax=tax, total=subtotal + tax)


def order_totals(*, order: ServiceOrder) -> Totals:
    """An invoiced order's totals are its invoice's (at the rate of that day); any other order's
    are at KIOKU_TAX_RATE now. Reads `order.lines.all()` and `order.invoice`, so a prefetch and a
    select_related save the queries."""
    try:
        invoice = order.invoice
    except Invoice.DoesNotExist:
        return totals_of([line.amount for line in order.lines.all()], settings.KIOKU_TAX_RATE)
    return Totals(
        subtotal=invoice.subtotal, tax_rate=invoice.tax_rate, tax=invoice.tax, total=invoice.total
    )


def _decimal(value: Any, *, field: str, code: str, places: int = 2) -> Decimal:
    """`value` as an exact Decimal with at most `places` decimals (a float goes through its
    shortest repr, 0.1 → 0.1)."""
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        number = Decimal("NaN")
    if not number.is_finite():
        raise DispatchError(
            code, f"{field} must be a decimal number.", status=422, details={"field": field}
        )
    if -number.as_tuple().exponent > places:
        raise DispatchError(
            code,
            f"{field} has more than {places} decimal places.",
            status=422,
            details={"field": field, "places": places},
        )
    return number


def _event(order: ServiceOrder, *, actor: Actor, note: str) -> None:
    """An audit log row for a change that keeps the order's status."""
    OrderEvent.objects.create(
        order=order,
        from_status=order.status,
        to_status=order.status,
        actor=actor.user,
        actor_label=actor.label,
        note=note,
    )


def _not_frozen(order: ServiceOrder) -> None:
    if order.status in FROZEN_STATUSES:
        raise DispatchError(
            DISPATCH_ORDER_FROZEN,
            f"Order #{order.pk} is {order.get_status_display().lower()}: its lines are final.",
            status=409,
            details={"status": order.status},
        )


@transaction.atomic
def order_line_add(
    *, order_id: int, item_code: str, quantity: Decimal | int | str = 1, actor: Actor
) -> OrderLine:
    """Quote a standard item on an open order. The item's name and price are copied into the
    line, so a later price change never rewrites this quote."""
    quantity = _decimal(quantity, field="quantity", code=DISPATCH_INVALID_ORDER)
    if not Decimal("0") < quantity <= MAX_QUANTITY:
        raise DispatchError(
            DISPATCH_INVALID_ORDER,
            f"quantity must be above 0 and at most {MAX_QUANTITY}.",
            status=422,
            details={"field": "quantity"},
        )
    order = order_locked(order_id)
    _not_frozen(order)
    item = QuoteItem.objects.filter(code=(item_code or "").strip(), is_active=True).first()
    if item is None:
        raise DispatchError(
            DISPATCH_INVALID_ORDER,
            f"No active quote item {item_code!r}.",
            status=422,
            details={"field": "item_code"},
        )
    amount = money(quantity * item.unit_price)
    if amount > MAX_MONEY:
        raise DispatchError(
            DISPATCH_INVALID_ORDER,
            f"The line's amount {amount} is larger than {MAX_MONEY}.",
            status=422,
            details={"field": "quantity"},
        )
    line = OrderLine.objects.create(
        order=order,
        item=item,
        description=item.name,
        quantity=quantity,
        unit_price=item.unit_price,
        amount=amount,
    )
    _event(
        order,
        actor=actor,
        note=f"Line added: {item.code} {item.name} × {quantity} at {item.unit_price} = {amount}.",
    )
    return line


@transaction.atomic
def order_line_remove(*, order_id: int, line_id: int, actor: Actor) -> None:
    """Take a line off an open order's quote."""
    order = order_locked(order_id)
    _not_frozen(order)
    line = OrderLine.objects.filter(pk=line_id, order=order).select_related("item").first()
    if line is None:
        raise DispatchError(
            DISPATCH_NOT_FOUND,
            f"Order #{order.pk} has no line #{line_id}.",
            status=404,
            details={"line_id": line_id},
        )
    line.delete()
    _event(
        order,
        actor=actor,
        note=f"Line removed: {line.item.code} {line.description} × {line.quantity} = {line.amount}.",
    )


def _completed(order: ServiceOrder, doing: str) -> None:
    if order.status != OrderStatus.COMPLETED:
        raise DispatchError(
            DISPATCH_ORDER_NOT_COMPLETED,
            f"Order #{order.pk} is {order.get_status_display().lower()}: only a completed order "
            f"can be {doing}.",
            status=409,
            details={"status": order.status},
        )


def _settlement_basis(
    share_percent: Decimal | str | None, fee: Decimal | str | None
) -> tuple[Decimal | None, Decimal | None]:
    """Exactly one of a share (above 0, at most 100) or a fee (0 to MAX_MONEY), as Decimals."""
    code = DISPATCH_INVALID_SETTLEMENT
    if (share_percent is None) == (fee is None):
        raise DispatchError(
            code,
            "Settle by share_percent or by fee: one of the two.",
            status=422,
            details={"field": "share_percent"},
        )
    if share_percent is not None:
        share_percent = _decimal(share_percent, field="share_percent", code=code)
        if not Decimal("0") < share_percent <= Decimal("100"):
            raise DispatchError(
                code,
                "share_percent must be above 0 and at most 100.",
                status=422,
                details={"field": "share_percent"},
            )
        return share_percent, None
    fee = _decimal(fee, field="fee", code=code)
    if not Decimal("0") <= fee <= MAX_MONEY:
        raise DispatchError(
            code, f"fee must be between 0 and {MAX_MONEY}.", status=422, details={"field": "fee"}
        )
    return None, fee


@transaction.atomic
def order_settle(
    *,
    order_id: int,
    actor: Actor,
    share_percent: Decimal | str | None = None,
    fee: Decimal | str | None = None,
) -> Settlement:
    """What the technician earns for a completed order, once: a share of its subtotal
    (`share_percent`, above 0 and at most 100) or a fixed `fee`, never both."""
    share_percent, fee = _settlement_basis(share_percent, fee)
    order = order_locked(order_id)
    _completed(order, "settled")
    if Settlement.objects.filter(order=order).exists():
        raise DispatchError(
            DISPATCH_ALREADY_SETTLED,
            f"Order #{order.pk} is settled already.",
            status=409,
            details={"order_id": order.pk},
        )
    technician = order.technician
    if share_percent is not None:
        subtotal = order_totals(order=order).subtotal
        amount = money(subtotal * share_percent / 100)
        how = f"{share_percent} % of {subtotal}"
    else:
        amount = money(fee)
        how = "fixed fee"
    settlement = Settlement.objects.create(
        order=order,
        technician=technician,
        basis="share" if share_percent is not None else "fee",
        share_percent=share_percent,
        amount=amount,
        settled_by=actor.label,
    )
    _event(order, actor=actor, note=f"Settled: {amount} to {technician.name} ({how}).")
    return settlement


# --- Invoices -----------------------------------------------------------------------------------

TAX_ID_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)


def tax_id_valid(tax_id: str) -> bool:
    """Whether `tax_id` is a well-formed Taiwanese business tax ID (統一編號): 8 digits, each times
    its weight (1,2,1,2,1,2,4,1), the digits of each product added up; the sum must be divisible
    by 5. When the 7th digit is 7 its product 28 may count as 1 or 0, so the sum or the sum + 1
    may be divisible. Divisibility by 5 (instead of 10) is the Ministry of Finance's rule since
    2023-04-01 (ROC 112), made to widen the numbers; every older valid ID still passes
    (財政部「營利事業統一編號檢查碼邏輯修正說明」, www.mof.gov.tw › 資訊園地). The checksum says
    the number is well-formed, not that the business exists."""
    if len(tax_id) != 8 or not tax_id.isascii() or not tax_id.isdigit():
        return False
    total = 0
    for digit, weight in zip(tax_id, TAX_ID_WEIGHTS, strict=True):
        product = int(digit) * weight
        total += product // 10 + product % 10
    if total % 5 == 0:
        return True
    return tax_id[6] == "7" and (total + 1) % 5 == 0


def invoice_number_next(*, issued_on: date) -> str:
    """`INV-<year>-<n>`, n from the invoice sequence (six digits at least)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [INVOICE_SEQUENCE])
        (number,) = cursor.fetchone()
    return f"INV-{issued_on.year}-{number:06d}"


def _buyer(buyer_name: str, buyer_tax_id: str) -> tuple[str, str]:
    """The buyer's name (required, spaces collapsed) and tax ID (optional; checksum-verified)."""
    buyer_name = " ".join((buyer_name or "").split())
    if not buyer_name or len(buyer_name) > 200:
        raise DispatchError(
            DISPATCH_INVALID_INVOICE,
            "Who is the buyer? buyer_name is required (at most 200 characters).",
            status=422,
            details={"field": "buyer_name"},
        )
    buyer_tax_id = (buyer_tax_id or "").strip()
    if buyer_tax_id and not tax_id_valid(buyer_tax_id):
        raise DispatchError(
            DISPATCH_INVALID_TAX_ID,
            f"{buyer_tax_id!r} is not a valid tax ID (統一編號: 8 digits with a checksum).",
            status=422,
            details={"field": "buyer_tax_id"},
        )
    return buyer_name, buyer_tax_id


@transaction.atomic
def order_invoice(
    *,
    order_id: int,
    buyer_name: str,
    actor: Actor,
    buyer_tax_id: str = "",
    issued_on: date | None = None,
) -> Invoice:
    """The invoice of a completed order, once, with its totals at KIOKU_TAX_RATE. A buyer tax ID
    (統一編號) is optional; when given it must pass its checksum."""
    buyer_name, buyer_tax_id = _buyer(buyer_name, buyer_tax_id)
    order = order_locked(order_id)
    _completed(order, "invoiced")
    if Invoice.objects.filter(order=order).exists():
        raise DispatchError(
            DISPATCH_ALREADY_INVOICED,
            f"Order #{order.pk} has its invoice already.",
            status=409,
            details={"order_id": order.pk},
        )
    amounts = list(order.lines.values_list("amount", flat=True))
    if not amounts:
        raise DispatchError(
            DISPATCH_INVALID_INVOICE,
            f"Order #{order.pk} has no lines: there is nothing to invoice.",
            status=422,
            details={"field": "lines"},
        )
    totals = totals_of(amounts, settings.KIOKU_TAX_RATE)
    if totals.total > MAX_MONEY:
        raise DispatchError(
            DISPATCH_INVALID_INVOICE,
            f"The total {totals.total} is larger than an invoice holds ({MAX_MONEY}).",
            status=422,
            details={"field": "lines"},
        )
    issued_on = issued_on or timezone.localdate()
    invoice = Invoice.objects.create(
        order=order,
        number=invoice_number_next(issued_on=issued_on),
        issued_on=issued_on,
        buyer_name=buyer_name,
        buyer_tax_id=buyer_tax_id,
        subtotal=totals.subtotal,
        tax_rate=totals.tax_rate,
        tax=totals.tax,
        total=totals.total,
        issued_by=actor.label,
    )
    _event(order, actor=actor, note=f"Invoice {invoice.number}: {totals.total} incl. tax.")
    return invoice
