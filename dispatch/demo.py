"""Demo dispatch data for `./scripts/run`: technicians in Taipei and Tokyo, standard quote items,
30 resolved cases (dispatch/demo_data/cases.json: groups of the same fault reported in other
words and languages, some with error codes the demo manuals explain) and a few open cards."""

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.utils import timezone

from dispatch.billing import order_invoice, order_line_add
from dispatch.models import OrderStatus, ProblemCard, QuoteItem, Technician, TechnicianSkill
from dispatch.orders import Actor, order_create, order_transition
from dispatch.services import CustomerIn, problem_card_create, problem_card_resolve

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"

TECHNICIANS = [
    # name, areas, skills {brand_key: level}, capacity, rating
    ("Lin Chih-hao", ["Taipei Da'an", "Taipei Xinyi"], {"kagiya": 5, "lumio": 2}, 5, "4.8"),
    ("Wang Yu-ting", ["Taipei Zhongshan", "Taipei Da'an"], {"kagiya": 4}, 4, "4.6"),
    ("Chang Wei", ["Taipei Xinyi", "Taipei Zhongshan"], {"kagiya": 3, "lumio": 3}, 4, "4.2"),
    ("Sato Kenji", ["Tokyo Shibuya", "Tokyo Minato"], {"lumio": 5, "kagiya": 3}, 5, "4.9"),
    ("Tanaka Aoi", ["Tokyo Setagaya", "Tokyo Shibuya"], {"kagiya": 4, "lumio": 4}, 4, "4.7"),
]

QUOTE_ITEMS = [
    ("VISIT", "Call-out and diagnosis", "800.00"),
    ("ADJUST", "Door and strike adjustment", "600.00"),
    ("FW", "Firmware update on site", "300.00"),
    ("BH2", "Battery holder KG-BH2", "450.00"),
    ("FP1", "Fingerprint module KG-FP1", "2200.00"),
    ("DU1", "Drive unit KG-DU1", "3200.00"),
    ("AA8", "AA alkaline batteries (8)", "160.00"),
    ("OP300", "KG-300 outdoor panel", "4800.00"),
]

OPEN_CARDS = [
    {
        "brand": "Kagiya",
        "lock_model": "KG-200",
        "symptom": "error_code",
        "error_code": "e21",
        "description": "Since the rainy season the lock beeps and shows E21 when locking at night.",
        "customer": CustomerIn(
            name="Huang Shu-fen", phone="0922-111-333", service_area="Taipei Da'an"
        ),
    },
    {
        "brand": "Lumio",
        "lock_model": "LM5",
        "symptom": "error_code",
        "error_code": "E 05",
        "description": "寒い朝だけ E-05 が出て鍵がかからない。",
        "customer": CustomerIn(name="Suzuki Hana", service_area="Tokyo Minato"),
    },
    {
        "brand": "Kagiya",
        "lock_model": "KG-300",
        "symptom": "damage",
        "description": "門鎖外殼被撞凹，按鍵有幾顆沒反應。",
        "customer": CustomerIn(name="陳志明", phone="0933-222-444", service_area="Taipei Xinyi"),
    },
]


def demo_is_loaded() -> bool:
    return ProblemCard.objects.exists() or Technician.objects.exists()


def demo_load() -> str:
    technicians = _technicians()
    for code, name, price in QUOTE_ITEMS:
        QuoteItem.objects.create(code=code, name=name, unit_price=Decimal(price))
    cases = json.loads((DEMO_DATA / "cases.json").read_text(encoding="utf-8"))
    for number, case in enumerate(cases):
        card = problem_card_create(
            customer=CustomerIn(name=f"Demo customer {number + 1}", service_area=case["area"]),
            brand=case["brand"],
            lock_model=case["model"],
            symptom=case["symptom"],
            error_code=case["error_code"],
            description=case["description"],
        )
        problem_card_resolve(
            card_id=card.pk,
            resolution=case["resolution"],
            root_cause=case["root_cause"],
            parts_used=case["parts"],
            resolved_by=_fixer(technicians, case["area"]),
        )
    for card in OPEN_CARDS:
        problem_card_create(**card)
    orders = _orders(technicians)
    return (
        f"{len(technicians)} technicians, {len(QUOTE_ITEMS)} quote items, "
        f"{len(cases)} resolved cases, {len(OPEN_CARDS)} open cards, {orders} service orders"
    )


# One order in every status: how far each demo order has gone.
ORDER_STEPS = (
    (OrderStatus.CREATED,),
    (OrderStatus.ASSIGNED,),
    (OrderStatus.ASSIGNED, OrderStatus.EN_ROUTE),
    (OrderStatus.ASSIGNED, OrderStatus.EN_ROUTE, OrderStatus.ON_SITE),
    (OrderStatus.ASSIGNED, OrderStatus.EN_ROUTE, OrderStatus.ON_SITE, OrderStatus.COMPLETED),
    (OrderStatus.CANCELLED,),
)


def _orders(technicians: list[Technician]) -> int:
    """A card and an order per status, today, through the same services a dispatcher uses."""
    actor = Actor(label="demo")
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for number, steps in enumerate(ORDER_STEPS):
        technician = technicians[number % len(technicians)]
        area = technician.service_areas[0]
        card = problem_card_create(
            customer=CustomerIn(
                name=f"Demo order customer {number + 1}",
                address=f"{area}, No. {number + 10}",
                service_area=area,
            ),
            brand="Kagiya",
            lock_model="KG-200",
            symptom="battery",
            error_code="E-01",
            description="Low battery warning E-01 even with new batteries.",
        )
        order = order_create(
            card_id=card.pk,
            actor=actor,
            scheduled_start=start + timedelta(hours=number),
            scheduled_end=start + timedelta(hours=number + 1),
        )
        if OrderStatus.CREATED in steps:
            continue
        for to in steps:
            order = order_transition(
                order_id=order.pk,
                to=to,
                version=order.version,
                actor=actor,
                technician_id=technician.pk,
                eta=start + timedelta(hours=number),
                note="Customer moved the visit." if to == OrderStatus.CANCELLED else "",
                work_done="Cleaned the battery contacts; E-01 cleared.",
                parts_used="none",
            )
            if to == OrderStatus.ON_SITE:
                order_line_add(order_id=order.pk, item_code="VISIT", quantity=1, actor=actor)
                order_line_add(order_id=order.pk, item_code="AA8", quantity=1, actor=actor)
                order.refresh_from_db()
        if order.status == OrderStatus.COMPLETED:
            order_invoice(order_id=order.pk, buyer_name=card.customer_name, actor=actor)
    return len(ORDER_STEPS)


def _technicians() -> list[Technician]:
    made = []
    for name, areas, skills, capacity, rating in TECHNICIANS:
        technician = Technician.objects.create(
            name=name, service_areas=areas, daily_capacity=capacity, rating=Decimal(rating)
        )
        TechnicianSkill.objects.bulk_create(
            TechnicianSkill(technician=technician, brand_key=brand, level=level)
            for brand, level in skills.items()
        )
        made.append(technician)
    return made


def _fixer(technicians: list[Technician], area: str) -> Technician:
    """The first technician serving the case's area (every demo area has one)."""
    return next(t for t in technicians if area in t.service_areas)
