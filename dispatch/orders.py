"""Writes to service orders: create (its card becomes dispatched), assign a technician, move along
the status flow (ORDER_TRANSITIONS), cancel. Every change is one row of the order's audit log
(OrderEvent: who, when, from, to, note), written in the same transaction as the change.

Optimistic locking: a caller passes the `version` it read; the order row is locked
(SELECT … FOR UPDATE) and a different version is a lost race, DISPATCH_CONFLICT. Two dispatchers
assigning the same order at once: the second waits for the first's lock, then finds the version
moved on."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.models import ApiKey
from dispatch.errors import (
    DISPATCH_CONFLICT,
    DISPATCH_INVALID_ORDER,
    DISPATCH_INVALID_TRANSITION,
    DispatchError,
    dispatch_not_found,
)
from dispatch.feedback import order_outcome_signals
from dispatch.models import (
    OPEN_ORDER_STATUSES,
    ORDER_TRANSITIONS,
    CardStatus,
    OrderEvent,
    OrderStatus,
    ProblemCard,
    ServiceOrder,
    Technician,
)
from dispatch.services import (
    FIELD_LIMITS,
    card_status_check,
    case_vector_prepare,
    problem_card_resolve,
)
from knowledge.text import normalize_text

# Longest accepted values (characters). What an order's completion writes into its card is held
# to the card's own limits.
ORDER_FIELD_LIMITS = {
    "address": 500,
    "note": 2_000,
    "work_done": FIELD_LIMITS["resolution"],
    "parts_used": FIELD_LIMITS["parts_used"],
}


@dataclass(frozen=True)
class Actor:
    """Who changes an order, as the audit log shows it: a signed-in user (pages, admin) by
    username, or an API key by its name (`api:<name>`)."""

    label: str
    user: Any = None  # the User, when a person acted

    @classmethod
    def of_user(cls, user: Any) -> "Actor":
        return cls(label=user.get_username(), user=user)

    @classmethod
    def of_api_key(cls, api_key: ApiKey) -> "Actor":
        return cls(label=f"api:{api_key.name}")


def _invalid(field: str, message: str, **details: Any) -> DispatchError:
    return DispatchError(
        DISPATCH_INVALID_ORDER, message, status=422, details={"field": field, **details}
    )


def _text(field: str, value: Any) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be text.")
    value = normalize_text(value).strip()
    limit = ORDER_FIELD_LIMITS[field]
    if len(value) > limit:
        raise _invalid(field, f"{field} is longer than {limit:,} characters.", limit=limit)
    return value


def _aware(value: datetime | None) -> datetime | None:
    """A time without a zone is read in the current time zone (TIME_ZONE)."""
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value)
    return value


def _location(latitude: float | None, longitude: float | None) -> tuple[float | None, float | None]:
    if (latitude is None) != (longitude is None):
        field = "longitude" if longitude is None else "latitude"
        raise _invalid(field, "Give both latitude and longitude, or neither.")
    if latitude is not None and not -90 <= latitude <= 90:
        raise _invalid("latitude", "latitude must be between -90 and 90.")
    if longitude is not None and not -180 <= longitude <= 180:
        raise _invalid("longitude", "longitude must be between -180 and 180.")
    return latitude, longitude


def _event(order: ServiceOrder, *, from_status: str, actor: Actor, note: str = "") -> OrderEvent:
    return OrderEvent.objects.create(
        order=order,
        from_status=from_status,
        to_status=order.status,
        actor=actor.user,
        actor_label=actor.label,
        note=note,
    )


@transaction.atomic
def order_create(
    *,
    card_id: int,
    actor: Actor,
    address: str = "",
    scheduled_start: datetime | None = None,
    scheduled_end: datetime | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> ServiceOrder:
    """Send someone to a card: the card becomes `dispatched` (the card status rule decides
    whether it may). A card holds one open order at a time; after a cancelled visit it is still
    dispatched and a new order follows it. Without an address the card's is used."""
    card = ProblemCard.objects.select_for_update().filter(pk=card_id).first()
    if card is None:
        raise dispatch_not_found("problem card", card_id, field="problem_card_id")
    address = _text("address", address) or card.address
    if not address:
        raise _invalid("address", "Where should the technician go? An address is required.")
    scheduled_start, scheduled_end = _aware(scheduled_start), _aware(scheduled_end)
    if scheduled_end is not None and scheduled_start is None:
        raise _invalid("scheduled_start", "A window that ends needs its start.")
    if scheduled_start and scheduled_end and scheduled_end <= scheduled_start:
        raise _invalid("scheduled_end", "The window must end after it starts.")
    latitude, longitude = _location(latitude, longitude)
    open_order = card.orders.filter(status__in=OPEN_ORDER_STATUSES).first()
    if open_order is not None:
        raise DispatchError(
            DISPATCH_INVALID_TRANSITION,
            f"Card #{card.pk} already has open order #{open_order.pk}; cancel it first.",
            status=409,
            details={"order_id": open_order.pk, "order_status": open_order.status},
        )
    if card.status != CardStatus.DISPATCHED:
        card_status_check(card, CardStatus.DISPATCHED)
        card.status = CardStatus.DISPATCHED
        card.version += 1
        card.save(update_fields=["status", "version", "updated_at"])
    order = ServiceOrder.objects.create(
        card=card,
        address=address,
        latitude=latitude,
        longitude=longitude,
        scheduled_start=scheduled_start,
        scheduled_end=scheduled_end,
    )
    _event(order, from_status="", actor=actor, note=f"Order for card #{card.pk}.")
    return order


def order_locked(order_id: int, version: int | None = None) -> ServiceOrder:
    """The order, locked for this transaction (one writer at a time: steps, lines, settlement and
    invoice never run beside each other); a stale `version`, when given, is a lost race."""
    order = ServiceOrder.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise dispatch_not_found("service order", order_id)
    if version is not None and order.version != version:
        raise DispatchError(
            DISPATCH_CONFLICT,
            f"Order #{order_id} changed since version {version} (now {order.version}): reload it.",
            status=409,
            details={"version": order.version},
        )
    return order


def _transition_check(order: ServiceOrder, to: str) -> None:
    """The one order status rule (ORDER_TRANSITIONS)."""
    allowed = ORDER_TRANSITIONS[order.status]
    if to not in allowed:
        raise DispatchError(
            DISPATCH_INVALID_TRANSITION,
            f"A {order.get_status_display().lower()} order cannot become {to}.",
            status=409,
            details={"from": order.status, "to": to, "allowed": list(allowed)},
        )


def _assign(
    order: ServiceOrder,
    *,
    technician_id: int | None,
    actor: Actor,
    eta: datetime | None,
    note: str,
) -> ServiceOrder:
    if order.status != OrderStatus.ASSIGNED:  # assigning again keeps `assigned`
        _transition_check(order, OrderStatus.ASSIGNED)
    if technician_id is None:
        raise _invalid("technician_id", "An assigned order needs its technician.")
    technician = Technician.objects.filter(pk=technician_id).first()
    if technician is None:
        raise dispatch_not_found("technician", technician_id, field="technician_id")
    if not technician.is_active:
        raise _invalid("technician_id", f"{technician.name} is not active.")
    before, previous = order.status, order.technician
    order.technician = technician
    order.status = OrderStatus.ASSIGNED
    if eta is not None:
        order.eta = eta
    order.version += 1
    order.save()
    said = (
        f"Reassigned from {previous.name} to {technician.name}."
        if previous is not None and previous.pk != technician.pk
        else f"Assigned to {technician.name}."
    )
    _event(order, from_status=before, actor=actor, note=f"{said} {note}".strip())
    return order


@transaction.atomic
def order_assign(
    *,
    order_id: int,
    technician_id: int,
    version: int,
    actor: Actor,
    eta: datetime | None = None,
    note: str = "",
) -> ServiceOrder:
    """Give the order to a technician (or to another one, before anyone set off)."""
    order = order_locked(order_id, version)
    return _assign(
        order,
        technician_id=technician_id,
        actor=actor,
        eta=_aware(eta),
        note=_text("note", note),
    )


@transaction.atomic
def order_cancel(*, order_id: int, version: int, actor: Actor, note: str) -> ServiceOrder:
    """Call off an open order, saying why. Its card stays dispatched: the fault is still there,
    and a new order may be sent."""
    return _cancel(order_locked(order_id, version), actor=actor, note=note)


def _cancel(order: ServiceOrder, *, actor: Actor, note: str) -> ServiceOrder:
    _transition_check(order, OrderStatus.CANCELLED)
    note = _text("note", note)
    if not note:
        raise _invalid("note", "Say why the order is cancelled.")
    before = order.status
    order.status = OrderStatus.CANCELLED
    order.version += 1
    order.save()
    _event(order, from_status=before, actor=actor, note=note)
    return order


def order_transition(
    *,
    order_id: int,
    to: str,
    version: int,
    actor: Actor,
    note: str = "",
    technician_id: int | None = None,
    eta: datetime | None = None,
    work_done: str = "",
    parts_used: str = "",
    diagnosis_matched: bool | None = None,
) -> ServiceOrder:
    """Move the order one step: `assigned` needs a technician, `en_route` an ETA (given now or
    before), `completed` the work done and the parts used (say "none" when there were none),
    `cancelled` a reason. Completing resolves the card with the order's findings, in one
    transaction: both happen or neither; `diagnosis_matched` (whether the fix matched the card's
    diagnosis, when someone says) raises or lowers what that diagnosis cited, in the same
    transaction (dispatch/feedback.py)."""
    if to not in OrderStatus.values:
        raise _invalid("to", f"Unknown status {to!r}; use one of {', '.join(OrderStatus.values)}.")
    case_vector = None
    if to == OrderStatus.COMPLETED:
        # The provider answers before the order row is locked (see case_vector_prepare).
        card_id = ServiceOrder.objects.filter(pk=order_id).values_list("card_id", flat=True).first()
        if card_id is not None:
            case_vector = case_vector_prepare(card_id=card_id)
    with transaction.atomic():
        order = order_locked(order_id, version)
        eta = _aware(eta)
        if to == OrderStatus.ASSIGNED:
            return _assign(
                order, technician_id=technician_id, actor=actor, eta=eta, note=_text("note", note)
            )
        if to == OrderStatus.CANCELLED:
            return _cancel(order, actor=actor, note=note)
        _transition_check(order, to)
        note = _text("note", note)
        if eta is not None:
            order.eta = eta
        if to == OrderStatus.EN_ROUTE and order.eta is None:
            raise _invalid(
                "eta", "When will the technician arrive? An order en route needs an ETA."
            )
        if to == OrderStatus.COMPLETED:
            order.work_done = _text("work_done", work_done)
            order.parts_used = _text("parts_used", parts_used)
            if not order.work_done:
                raise _invalid("work_done", "Say what was done: completing needs the work done.")
            if not order.parts_used:
                raise _invalid("parts_used", 'Say which parts were used ("none" when none were).')
            if diagnosis_matched is not None and not isinstance(diagnosis_matched, bool):
                raise _invalid("diagnosis_matched", "diagnosis_matched must be true or false.")
            order.diagnosis_matched = diagnosis_matched
            if diagnosis_matched is not None:
                said = "Fix matched the diagnosis." if diagnosis_matched else "Diagnosis was wrong."
                note = f"{note} {said}".strip()
            order.completed_at = timezone.now()
        before = order.status
        order.status = to
        order.version += 1
        order.save()
        _event(order, from_status=before, actor=actor, note=note)
        if to == OrderStatus.COMPLETED:
            problem_card_resolve(
                card_id=order.card_id,
                resolution=order.work_done,
                parts_used=order.parts_used,
                resolved_by=order.technician,
                prepared=case_vector,
            )
            # The diagnosis the technician worked from: resolving leaves the card's as it was.
            diagnosis = ProblemCard.objects.values_list("diagnosis", flat=True).get(
                pk=order.card_id
            )
            order_outcome_signals(order=order, diagnosis=diagnosis)
        return order
