"""Which technician should go: hard filters first (active, serves the area, capacity left that
day), then a weighted score of skill for the lock, rating and the day's load, with the reasons."""

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, Q
from django.utils import timezone

from dispatch.models import OrderStatus, Technician

# Weights of the score (they sum to 1): the right skill matters most, then a free day, then
# what customers said.
SKILL_WEIGHT = 0.5
LOAD_WEIGHT = 0.3
RATING_WEIGHT = 0.2
# Orders that take a slot of the technician's day.
BUSY_STATUSES = (OrderStatus.ASSIGNED, OrderStatus.EN_ROUTE, OrderStatus.ON_SITE)


@dataclass
class Candidate:
    technician_id: int
    name: str
    score: float
    skill: int
    load: int
    capacity: int
    rating: float
    reasons: list[str] = field(default_factory=list)


def technicians_rank(
    *,
    brand_key: str,
    symptom: str,
    service_area: str = "",
    day: date | None = None,
    limit: int = 5,
) -> list[Candidate]:
    """Active technicians who serve `service_area` (any, when the card names none) and have a
    slot left on `day`, best first, each with the reasons of its score."""
    day = day or timezone.localdate()
    technicians = Technician.objects.filter(is_active=True).annotate(
        load=Count(
            "orders",
            filter=Q(orders__status__in=BUSY_STATUSES, orders__scheduled_start__date=day),
        )
    )
    if service_area:
        technicians = technicians.filter(service_areas__contains=[service_area])
    skills = _skills(brand_key=brand_key, symptom=symptom)
    ranked = []
    for technician in technicians:
        if technician.load >= technician.daily_capacity:
            continue
        ranked.append(_candidate(technician, skills.get(technician.pk, 0), service_area))
    ranked.sort(key=lambda c: (-c.score, c.technician_id))
    return ranked[:limit]


def _skills(*, brand_key: str, symptom: str) -> dict[int, int]:
    """Each technician's level for the brand: the symptom's own skill where one is recorded,
    else the brand-wide one (blank symptom)."""
    levels: dict[int, tuple[bool, int]] = {}
    from dispatch.models import TechnicianSkill

    for skill in TechnicianSkill.objects.filter(
        brand_key=brand_key, symptom__in=["", symptom]
    ).only("technician_id", "symptom", "level"):
        specific = skill.symptom == symptom
        current = levels.get(skill.technician_id)
        if current is None or (specific and not current[0]):
            levels[skill.technician_id] = (specific, skill.level)
    return {technician: level for technician, (_, level) in levels.items()}


def _candidate(technician: Technician, skill: int, service_area: str) -> Candidate:
    capacity = technician.daily_capacity
    rating = float(technician.rating)
    free_share = 1 - technician.load / capacity
    score = SKILL_WEIGHT * skill / 5 + LOAD_WEIGHT * free_share + RATING_WEIGHT * rating / 5
    reasons = [
        f"skill {skill}/5 for this lock" if skill else "no recorded skill for this lock",
        f"{technician.load} of {capacity} slots taken that day",
        f"rated {rating:.1f}/5",
    ]
    if service_area:
        reasons.insert(0, f"serves {service_area}")
    return Candidate(
        technician_id=technician.pk,
        name=technician.name,
        score=round(score, 4),
        skill=skill,
        load=technician.load,
        capacity=capacity,
        rating=rating,
        reasons=reasons,
    )
