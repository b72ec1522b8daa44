"""Technician writes: fields checked, skills keyed by brand and replaced as a whole."""

from decimal import Decimal

import pytest

from dispatch.errors import DispatchError
from dispatch.models import Technician
from dispatch.technicians import SkillIn, technician_create, technician_update

pytestmark = pytest.mark.django_db


def skills_of(technician: Technician) -> list[tuple[str, str, int]]:
    return sorted(technician.skills.values_list("brand_key", "symptom", "level"))


def test_a_technician_is_stored_with_normalised_areas_and_skill_keys():
    technician = technician_create(
        name="  Lin   Wei ",
        service_areas=["Taipei Da'an", " Taipei  Da'an ", ""],
        rating="4.855",
        skills=[SkillIn(brand="KG Locks", level=4), SkillIn(brand="Lumio", symptom="app", level=2)],
    )
    assert technician.name == "Lin Wei"
    assert technician.service_areas == ["Taipei Da'an"]
    assert technician.rating == Decimal("4.86")  # half-up to the column's two places
    assert skills_of(technician) == [("kglocks", "", 4), ("lumio", "app", 2)]


def test_skills_given_to_an_update_replace_all_and_others_stay():
    technician = technician_create(name="Lin", skills=[SkillIn(brand="Kagiya", level=4)])
    technician_update(technician_id=technician.pk, daily_capacity=6)
    assert skills_of(technician) == [("kagiya", "", 4)]
    technician_update(technician_id=technician.pk, skills=[SkillIn(brand="Lumio", level=5)])
    assert skills_of(technician) == [("lumio", "", 5)]
    assert Technician.objects.get().daily_capacity == 6


def test_two_skills_for_the_same_brand_and_symptom_are_refused():
    with pytest.raises(DispatchError) as excinfo:
        technician_create(
            name="Lin", skills=[SkillIn(brand="KG-200", level=4), SkillIn(brand="kg 200", level=1)]
        )
    assert (excinfo.value.code, excinfo.value.details["field"]) == (
        "DISPATCH_INVALID_TECHNICIAN",
        "skills",
    )
    assert not Technician.objects.exists()


def test_fields_that_are_not_a_technicians_cannot_be_changed():
    technician = technician_create(name="Lin")
    with pytest.raises(DispatchError) as excinfo:
        technician_update(technician_id=technician.pk, created_at=None)
    assert excinfo.value.details["field"] == "created_at"


def test_a_location_is_both_coordinates_or_none():
    technician = technician_create(name="Lin", latitude=25.03, longitude=121.56)
    with pytest.raises(DispatchError) as excinfo:
        technician_update(technician_id=technician.pk, longitude=None)
    assert excinfo.value.details["field"] == "longitude"
    technician_update(technician_id=technician.pk, latitude=None, longitude=None)
    assert Technician.objects.get().latitude is None
