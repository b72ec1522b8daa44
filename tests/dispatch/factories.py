"""Problem cards and technicians as the services make them."""

from dispatch.models import ProblemCard, Technician, TechnicianSkill
from dispatch.services import CustomerIn, problem_card_create, problem_card_resolve

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
