"""Which technician should go: hard filters first (active, serves the area, capacity left that
day), then a weighted score of skill for the lock, rating and the day's load — and, when the
visit's place is known, the distance — with the reasons."""

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, F, FloatField, Func, Q, Value
from django.utils import timezone

from dispatch.models import OrderStatus, ServiceOrder, Technician, TechnicianSkill

# Weights of the score (they sum to 1): the right skill matters most, then a free day, then
# what customers said.
SKILL_WEIGHT = 0.5
LOAD_WEIGHT = 0.3
RATING_WEIGHT = 0.2
# When the visit has coordinates, nearness takes this share of the score (the others keep their
# proportions). Nearness is 1 / (1 + km / DISTANCE_HALF_KM): 1 next door, ½ at DISTANCE_HALF_KM;
# a technician without a location counts as that far away, neither preferred nor shunned.
DISTANCE_WEIGHT = 0.2
DISTANCE_HALF_KM = 10.0
# Orders that take a slot of the technician's day: a finished visit took its slot too.
BUSY_STATUSES = (
    OrderStatus.ASSIGNED,
    OrderStatus.EN_ROUTE,
    OrderStatus.ON_SITE,
    OrderStatus.COMPLETED,
)


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
    distance_km: float | None = None


def busy_orders(day: date) -> Q:
    """A technician's orders that take a slot of `day` (on Technician, through `orders`)."""
    return Q(orders__status__in=BUSY_STATUSES, orders__scheduled_start__date=day)


def technicians_rank(
    *,
    brand_key: str,
    symptom: str,
    service_area: str = "",
    day: date | None = None,
    limit: int = 5,
    near: tuple[float, float] | None = None,
    exclude_order_id: int | None = None,
) -> list[Candidate]:
    """Active technicians who serve `service_area` (any, when the card names none) and have a
    slot left on `day`, best first, each with the reasons of its score. `near` (latitude,
    longitude) adds the distance; `exclude_order_id` leaves that order out of the day's load (the
    order being matched, when it is already assigned)."""
    day = day or timezone.localdate()
    busy = busy_orders(day)
    if exclude_order_id is not None:
        busy &= ~Q(orders__pk=exclude_order_id)
    technicians = Technician.objects.filter(is_active=True).annotate(
        load=Count("orders", filter=busy)
    )
    if near is not None:
        technicians = technicians.annotate(distance_m=_earth_distance(near))
    if service_area:
        technicians = technicians.filter(service_areas__contains=[service_area])
    skills = _skills(brand_key=brand_key, symptom=symptom)
    ranked = []
    for technician in technicians:
        if technician.load >= technician.daily_capacity:
            continue
        ranked.append(
            _candidate(technician, skills.get(technician.pk, 0), service_area, near is not None)
        )
    ranked.sort(key=lambda c: (-c.score, c.technician_id))
    return ranked[:limit]


def order_candidates(*, order: ServiceOrder, limit: int = 5) -> list[Candidate]:
    """Technicians for an order: skill for its card's brand and symptom, the card's service area,
    the load of the order's day (today when unscheduled) without the order itself, and the
    distance when the order has coordinates."""
    card = order.card
    day = timezone.localdate(order.scheduled_start) if order.scheduled_start else None
    near = (order.latitude, order.longitude) if order.latitude is not None else None
    return technicians_rank(
        brand_key=card.brand_key,
        symptom=card.symptom,
        service_area=card.service_area,
        day=day,
        limit=limit,
        near=near,
        exclude_order_id=order.pk,
    )


def _earth_distance(near: tuple[float, float]) -> Func:
    """Metres from the technician's location to `near` on the earth's surface (PostgreSQL's
    earthdistance: ll_to_earth, earth_distance); NULL when the technician has no location."""
    latitude, longitude = near
    return Func(
        Func(F("latitude"), F("longitude"), function="ll_to_earth"),
        Func(
            Value(float(latitude), output_field=FloatField()),
            Value(float(longitude), output_field=FloatField()),
            function="ll_to_earth",
        ),
        function="earth_distance",
        output_field=FloatField(),
    )


def _skills(*, brand_key: str, symptom: str) -> dict[int, int]:
    """Each technician's level for the brand: the symptom's own skill where one is recorded,
    else the brand-wide one (blank symptom)."""
    levels: dict[int, tuple[bool, int]] = {}
    for skill in TechnicianSkill.objects.filter(
        brand_key=brand_key, symptom__in=["", symptom]
    ).only("technician_id", "symptom", "level"):
        specific = skill.symptom == symptom
        current = levels.get(skill.technician_id)
        if current is None or (specific and not current[0]):
            levels[skill.technician_id] = (specific, skill.level)
    return {technician: level for technician, (_, level) in levels.items()}


def _candidate(technician: Technician, skill: int, service_area: str, has_place: bool) -> Candidate:
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
    distance_km = None
    if has_place:
        metres = getattr(technician, "distance_m", None)
        if metres is None:
            nearness = 1 / 2
            reasons.append(f"location unknown (counted as {DISTANCE_HALF_KM:.0f} km away)")
        else:
            distance_km = round(metres / 1000, 1)
            nearness = 1 / (1 + distance_km / DISTANCE_HALF_KM)
            reasons.append(f"{distance_km:.1f} km away")
        score = (1 - DISTANCE_WEIGHT) * score + DISTANCE_WEIGHT * nearness
    return Candidate(
        technician_id=technician.pk,
        name=technician.name,
        score=round(score, 4),
        skill=skill,
        load=technician.load,
        capacity=capacity,
        rating=rating,
        reasons=reasons,
        distance_km=distance_km,
    )
