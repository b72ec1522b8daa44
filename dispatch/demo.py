"""Demo dispatch data for `./scripts/run`: technicians in Taipei and Tokyo, standard quote items,
30 resolved cases (dispatch/demo_data/cases.json: groups of the same fault reported in other
words and languages, some with error codes the demo manuals explain) and a few open cards."""

import json
from decimal import Decimal
from pathlib import Path

from dispatch.models import ProblemCard, QuoteItem, Technician, TechnicianSkill
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
    return (
        f"{len(technicians)} technicians, {len(QUOTE_ITEMS)} quote items, "
        f"{len(cases)} resolved cases, {len(OPEN_CARDS)} open cards"
    )


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
