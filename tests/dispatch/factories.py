"""Problem cards, technicians, service orders and quote items as the services make them."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from dispatch.models import (
    OrderStatus,
    ProblemCard,
    QuoteItem,
    ServiceOrder,
    Technician,
    TechnicianSkill,
)
from dispatch.orders import Actor, order_cancel, order_create, order_transition
from dispatch.services import CustomerIn, problem_card_create, problem_card_resolve
from knowledge.models import KnowledgeSource
from tests.knowledge.factories import make_source

FINGERPRINT_MANUAL = """# KG-200 fingerprint reader

## Fingerprint reader does not respond

If the fingerprint reader ignores a finger, clean the sensor with a dry cloth and enrol the
finger again from the admin menu (hold # for five seconds).
"""
E21_WONT_UNLOCK = "After entering the PIN the keypad shows E-21 and the bolt does not retract."


def make_card(
    *,
    brand: str = "Kagiya",
    lock_model: str = "KG-200",
    symptom: str = "wont_unlock",
    error_code: str = "",
    description: str = E21_WONT_UNLOCK,
    area: str = "Taipei Da'an",
) -> ProblemCard:
    return problem_card_create(
        customer=CustomerIn(name="Chen Mei", phone="0912-345-678", service_area=area),
        brand=brand,
        lock_model=lock_model,
        symptom=symptom,
        error_code=error_code,
        description=description,
    )


def make_case(*, resolution: str = "Re-seated the motor cable.", **card: str) -> ProblemCard:
    """A resolved card (the caller embeds it, e.g. with embedding_run)."""
    created = make_card(**card)
    return problem_card_resolve(card_id=created.pk, resolution=resolution)


def make_technician(
    name: str, *, areas: list[str], skills: dict[str, int], capacity: int = 4, rating: str = "4.5"
) -> Technician:
    technician = Technician.objects.create(
        name=name, service_areas=areas, daily_capacity=capacity, rating=rating
    )
    for brand_key, level in skills.items():
        TechnicianSkill.objects.create(technician=technician, brand_key=brand_key, level=level)
    return technician


# --- Service orders ---------------------------------------------------------------------------

DISPATCHER = Actor(label="dispatcher")
ADDRESS = "No. 1, Section 2, Heping E. Rd, Da'an, Taipei"
# What a step needs, as a dispatcher would give it.
WORK = {"work_done": "Re-seated the motor cable.", "parts_used": "none"}


def make_order(card: ProblemCard | None = None, **fields: object) -> ServiceOrder:
    card = card or make_card()
    return order_create(card_id=card.pk, address=ADDRESS, actor=DISPATCHER, **fields)


def make_item(
    code: str = "SVC-CALL", name: str = "Service call", price: str = "600.00"
) -> QuoteItem:
    return QuoteItem.objects.create(code=code, name=name, unit_price=Decimal(price))


def order_in_status(
    status: str, *, technician: Technician | None = None, order: ServiceOrder | None = None
) -> ServiceOrder:
    """An order walked through the flow, by its legal steps, to `status`."""
    order = order or make_order()
    if status == OrderStatus.CREATED:
        return order
    if status == OrderStatus.CANCELLED:
        return order_cancel(
            order_id=order.pk, version=order.version, actor=DISPATCHER, note="Customer away."
        )
    technician = technician or make_technician("Lin", areas=["Taipei Da'an"], skills={})
    path = [OrderStatus.ASSIGNED, OrderStatus.EN_ROUTE, OrderStatus.ON_SITE, OrderStatus.COMPLETED]
    for step in path[: path.index(status) + 1]:
        order = order_transition(
            order_id=order.pk,
            to=step,
            version=order.version,
            actor=DISPATCHER,
            technician_id=technician.pk,
            eta=timezone.now() + timedelta(minutes=30),
            **WORK,
        )
    return order


def make_fingerprint_manual() -> KnowledgeSource:
    """Kagiya's KG-200 fingerprint manual (brand and models in its metadata), for layer 2; the
    caller embeds it."""
    return make_source(
        text=FINGERPRINT_MANUAL,
        title="KG-200 fingerprint",
        uri="kb://fp",
        metadata={"brand": "Kagiya", "models": ["KG-200"]},
    )
