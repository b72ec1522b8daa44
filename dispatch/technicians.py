"""Writes to technicians: create and edit, with their skills (per brand, optionally per symptom,
level 0–5) and service areas, as matching reads them."""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from dispatch.errors import DISPATCH_INVALID_TECHNICIAN, DispatchError
from dispatch.models import Symptom, Technician, TechnicianSkill, normalize_key
from knowledge.text import normalize_text

# Longest accepted values (characters): the columns'.
TECHNICIAN_FIELD_LIMITS = {"name": 200, "phone": 40, "service_area": 100, "brand": 100}
MAX_DAILY_CAPACITY = 50


@dataclass(frozen=True)
class SkillIn:
    brand: str  # as people write it; stored as its matching key (KG-200 → kg200)
    level: int
    symptom: str = ""  # blank: every symptom of the brand


def _invalid(field: str, message: str) -> DispatchError:
    return DispatchError(DISPATCH_INVALID_TECHNICIAN, message, status=422, details={"field": field})


def _text(field: str, value: Any, *, limit_of: str | None = None) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be text.")
    value = " ".join(normalize_text(value).split())
    limit = TECHNICIAN_FIELD_LIMITS[limit_of or field]
    if len(value) > limit:
        raise _invalid(field, f"{field} is longer than {limit} characters.")
    return value


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validated technician fields (those present in `values`)."""
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = _text("name", values["name"])
        if not cleaned["name"]:
            raise _invalid("name", "name is required.")
    if "phone" in values:
        cleaned["phone"] = _text("phone", values["phone"])
    if "service_areas" in values:
        areas = [
            _text("service_areas", area, limit_of="service_area")
            for area in values["service_areas"] or []
        ]
        cleaned["service_areas"] = list(dict.fromkeys(area for area in areas if area))
    for field, bound in (("latitude", 90), ("longitude", 180)):
        if field not in values:
            continue
        if values[field] is None:
            cleaned[field] = None
            continue
        try:
            degrees = float(values[field])
        except (TypeError, ValueError):
            degrees = float("nan")
        if not -bound <= degrees <= bound:  # NaN fails too
            raise _invalid(field, f"{field} must be between -{bound} and {bound}.")
        cleaned[field] = degrees
    if "rating" in values:
        try:
            rating = Decimal(str(values["rating"]))
        except InvalidOperation:
            rating = Decimal("NaN")
        if not rating.is_finite() or not Decimal("0") <= rating <= Decimal("5"):
            raise _invalid("rating", "rating must be a number from 0 to 5.")
        cleaned["rating"] = rating.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if "daily_capacity" in values:
        capacity = values["daily_capacity"]
        if not isinstance(capacity, int) or not 1 <= capacity <= MAX_DAILY_CAPACITY:
            raise _invalid(
                "daily_capacity", f"daily_capacity must be from 1 to {MAX_DAILY_CAPACITY} orders."
            )
        cleaned["daily_capacity"] = capacity
    if "is_active" in values:
        cleaned["is_active"] = bool(values["is_active"])
    return cleaned


def _skills(skills: Iterable[SkillIn]) -> list[tuple[str, str, int]]:
    """(brand_key, symptom, level) per skill; one per brand and symptom."""
    rows: dict[tuple[str, str], int] = {}
    for skill in skills:
        brand_key = normalize_key(_text("skills.brand", skill.brand, limit_of="brand"))
        if not brand_key:
            raise _invalid("skills.brand", "A skill names its brand.")
        if skill.symptom and skill.symptom not in Symptom.values:
            raise _invalid(
                "skills.symptom",
                f"Unknown symptom {skill.symptom!r}; use one of {', '.join(Symptom.values)}.",
            )
        if not isinstance(skill.level, int) or not 0 <= skill.level <= 5:
            raise _invalid("skills.level", "A skill's level is from 0 to 5.")
        if (brand_key, skill.symptom) in rows:
            raise _invalid(
                "skills", f"Two skills for {brand_key}/{skill.symptom or '*'}: keep one."
            )
        rows[(brand_key, skill.symptom)] = skill.level
    return [(brand, symptom, level) for (brand, symptom), level in rows.items()]


def _skills_write(technician: Technician, rows: list[tuple[str, str, int]]) -> None:
    technician.skills.all().delete()
    TechnicianSkill.objects.bulk_create(
        TechnicianSkill(technician=technician, brand_key=brand, symptom=symptom, level=level)
        for brand, symptom, level in rows
    )


@transaction.atomic
def technician_create(
    *,
    name: str,
    phone: str = "",
    service_areas: Iterable[str] = (),
    latitude: float | None = None,
    longitude: float | None = None,
    rating: Decimal | str = Decimal("4.00"),
    daily_capacity: int = 4,
    is_active: bool = True,
    skills: Iterable[SkillIn] = (),
) -> Technician:
    fields = _fields(
        {
            "name": name,
            "phone": phone,
            "service_areas": list(service_areas),
            "latitude": latitude,
            "longitude": longitude,
            "rating": rating,
            "daily_capacity": daily_capacity,
            "is_active": is_active,
        }
    )
    if (fields["latitude"] is None) != (fields["longitude"] is None):
        raise _invalid("longitude", "Give both latitude and longitude, or neither.")
    rows = _skills(skills)
    technician = Technician.objects.create(**fields)
    _skills_write(technician, rows)
    return technician


@transaction.atomic
def technician_update(
    *, technician_id: int, skills: Iterable[SkillIn] | None = None, **changes: Any
) -> Technician:
    """Change the given fields; `skills`, when given, replace all of the technician's skills."""
    unknown = set(changes) - {
        "name",
        "phone",
        "service_areas",
        "latitude",
        "longitude",
        "rating",
        "daily_capacity",
        "is_active",
    }
    if unknown:
        raise _invalid(sorted(unknown)[0], f"Cannot change {', '.join(sorted(unknown))}.")
    technician = Technician.objects.select_for_update().get(pk=technician_id)
    for field, value in _fields(changes).items():
        setattr(technician, field, value)
    if (technician.latitude is None) != (technician.longitude is None):
        raise _invalid("longitude", "Give both latitude and longitude, or neither.")
    technician.save()
    if skills is not None:
        _skills_write(technician, _skills(skills))
    return technician
