"""Matching technicians to an order: who is left out, the order of the rest, and the reasons."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from dispatch.matching import order_candidates, technicians_rank
from dispatch.models import OrderStatus, ServiceOrder, Technician, TechnicianSkill
from tests.dispatch.factories import make_card, make_order, make_technician, order_in_status

pytestmark = pytest.mark.django_db

DAAN = "Taipei Da'an"
# Da'an Park, Taipei 101 (about 2.5 km east) and Keelung station (about 23 km north-east).
DAAN_PARK = (25.0296, 121.5355)
TAIPEI_101 = (25.0340, 121.5645)
KEELUNG = (25.1318, 121.7392)


def tomorrow_at(hour: int, *, days: int = 1) -> datetime:
    day = timezone.localdate() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.get_current_timezone())


def names(candidates) -> list[str]:
    return [candidate.name for candidate in candidates]


def busy(technician: Technician, orders: int, *, at: datetime) -> None:
    """Give `technician` that many assigned orders starting at `at`."""
    for _ in range(orders):
        order = make_order(make_card(), scheduled_start=at)
        order_in_status(OrderStatus.ASSIGNED, order=order, technician=technician)


def test_candidates_are_ranked_by_skill_free_slots_and_rating():
    make_technician("Expert", areas=[DAAN], skills={"kagiya": 5}, rating="3.0")
    make_technician("Novice", areas=[DAAN], skills={"kagiya": 1}, rating="5.0")
    loaded = make_technician("Loaded", areas=[DAAN], skills={"kagiya": 5}, rating="3.0")
    make_technician("Praised", areas=[DAAN], skills={"kagiya": 5}, rating="4.0")
    busy(loaded, 3, at=tomorrow_at(9))
    order = make_order(scheduled_start=tomorrow_at(14))

    # Praised 0.96, Expert 0.92 (same skill, lower rating), Loaded 0.695 (3 of 4 slots
    # taken), Novice 0.6 (skill 1/5 despite its rating).
    assert names(order_candidates(order=order)) == ["Praised", "Expert", "Loaded", "Novice"]


def test_each_candidate_says_why():
    make_technician("Lin", areas=[DAAN], skills={"kagiya": 4}, rating="4.5")
    (lin,) = order_candidates(order=make_order(scheduled_start=tomorrow_at(9)))
    assert lin.reasons == [
        "serves Taipei Da'an",
        "skill 4/5 for this lock",
        "0 of 4 slots taken that day",
        "rated 4.5/5",
    ]
    assert lin.distance_km is None


def test_technicians_outside_the_area_inactive_or_full_that_day_are_left_out():
    make_technician("Elsewhere", areas=["Tokyo Shibuya"], skills={"kagiya": 5})
    Technician.objects.filter(
        pk=make_technician("Resting", areas=[DAAN], skills={"kagiya": 5}).pk
    ).update(is_active=False)
    full = make_technician("Full", areas=[DAAN], skills={"kagiya": 5}, capacity=2)
    busy(full, 2, at=tomorrow_at(8))
    make_technician("Free", areas=[DAAN], skills={})

    assert names(order_candidates(order=make_order(scheduled_start=tomorrow_at(15)))) == ["Free"]


def test_the_load_is_the_orders_day_not_today():
    lin = make_technician("Lin", areas=[DAAN], skills={"kagiya": 3}, capacity=2)
    busy(lin, 2, at=tomorrow_at(8))
    today = make_order(scheduled_start=tomorrow_at(12, days=0))
    day_after = make_order(scheduled_start=tomorrow_at(9, days=2))
    assert names(order_candidates(order=today)) == ["Lin"]
    assert names(order_candidates(order=day_after)) == ["Lin"]
    assert order_candidates(order=make_order(scheduled_start=tomorrow_at(16))) == []


def test_a_finished_visit_took_its_slot_of_the_day():
    lin = make_technician("Lin", areas=[DAAN], skills={"kagiya": 3}, capacity=1)
    done = order_in_status(
        OrderStatus.COMPLETED, order=make_order(scheduled_start=tomorrow_at(8)), technician=lin
    )
    assert done.status == OrderStatus.COMPLETED
    assert order_candidates(order=make_order(scheduled_start=tomorrow_at(13))) == []


def test_the_order_being_matched_is_not_part_of_its_technicians_load():
    lin = make_technician("Lin", areas=[DAAN], skills={"kagiya": 3}, capacity=1)
    order = order_in_status(
        OrderStatus.ASSIGNED, order=make_order(scheduled_start=tomorrow_at(10)), technician=lin
    )
    (candidate,) = order_candidates(order=order)
    assert (candidate.name, candidate.load) == ("Lin", 0)


def test_a_skill_for_the_symptom_wins_over_the_brand_wide_one():
    lin = make_technician("Lin", areas=[DAAN], skills={"kagiya": 2})
    TechnicianSkill.objects.create(
        technician=lin, brand_key="kagiya", symptom="wont_unlock", level=5
    )
    (candidate,) = technicians_rank(brand_key="kagiya", symptom="wont_unlock", service_area=DAAN)
    assert candidate.skill == 5


def place(technician: Technician, where: tuple[float, float]) -> None:
    Technician.objects.filter(pk=technician.pk).update(latitude=where[0], longitude=where[1])


def test_with_coordinates_the_nearer_of_two_equals_goes_first_with_the_distance():
    far = make_technician("Far", areas=[DAAN], skills={"kagiya": 4})
    near = make_technician("Near", areas=[DAAN], skills={"kagiya": 4})
    place(far, KEELUNG)
    place(near, TAIPEI_101)
    order = make_order(latitude=DAAN_PARK[0], longitude=DAAN_PARK[1])

    first, second = order_candidates(order=order)

    assert (first.name, second.name) == ("Near", "Far")
    assert 2.5 < first.distance_km < 3.5 and 22 < second.distance_km < 28
    assert first.reasons[-1] == f"{first.distance_km:.1f} km away"
    assert first.score > second.score


def test_a_technician_without_a_location_counts_as_ten_km_away():
    make_technician("Unplaced", areas=[DAAN], skills={"kagiya": 4})
    order = make_order(latitude=DAAN_PARK[0], longitude=DAAN_PARK[1])
    (candidate,) = order_candidates(order=order)
    assert candidate.distance_km is None
    assert candidate.reasons[-1] == "location unknown (counted as 10 km away)"


def test_without_coordinates_the_score_is_the_diagnosis_one():
    make_technician("Lin", areas=[DAAN], skills={"kagiya": 5}, rating="5.0")
    order = make_order()
    assert ServiceOrder.objects.get(pk=order.pk).latitude is None
    (candidate,) = order_candidates(order=order)
    # skill 5/5 × 0.5 + a free day × 0.3 + rating 5/5 × 0.2
    assert candidate.score == 1.0
