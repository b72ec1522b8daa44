"""The technician, service-order and quote-item API: routes, scopes, status codes, error shapes
and money as strings."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from dispatch.models import CardStatus, OrderStatus, ProblemCard, ServiceOrder
from tests.conftest import ApiClient
from tests.dispatch.factories import (
    ADDRESS,
    make_card,
    make_item,
    make_order,
    make_technician,
    order_in_status,
)
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db(transaction=True)

DAAN = "Taipei Da'an"
ETA = "2026-12-24T10:30:00+08:00"


@pytest.fixture
def lin():
    return make_technician("Lin", areas=[DAAN], skills={"kagiya": 4})


def post_order(api, card, **fields):
    body = {
        "problem_card_id": card.pk,
        "address": ADDRESS,
        "scheduled_start": "2026-12-24T09:00:00+08:00",
        "scheduled_end": "2026-12-24T11:00:00+08:00",
        **fields,
    }
    return api.post("/api/v1/service-orders", json=body)


def move(api, order_id, to, version, **fields):
    return api.post(
        f"/api/v1/service-orders/{order_id}/transition",
        json={"to": to, "version": version, **fields},
    )


# --- Service orders -------------------------------------------------------------------------------


def test_creating_an_order_answers_201_and_dispatches_the_card(api):
    card = make_card()
    response = post_order(api, card)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "status", "version"} <= set(body)
    assert (body["status"], body["version"], body["problem_card_id"]) == ("created", 1, card.pk)
    assert body["scheduled_start"].startswith("2026-12-24T01:00:00")  # stored in UTC
    assert body["events"][0]["actor"].startswith("api:test-key-")
    assert ProblemCard.objects.get().status == CardStatus.DISPATCHED


def test_a_window_ending_before_it_starts_is_a_422_with_the_field(api):
    response = post_order(api, make_card(), scheduled_end="2026-12-24T08:00:00+08:00")
    body = assert_error_shape(response, 422, "DISPATCH_INVALID_ORDER")
    assert body["details"]["field"] == "scheduled_end"


def test_reading_needs_a_key_and_writing_the_write_scope(api_as, client):
    assert_error_shape(client.get("/api/v1/service-orders"), 401, "AUTH_REQUIRED")
    reader = api_as("read")
    assert reader.get("/api/v1/service-orders").status_code == 200
    assert reader.get("/api/v1/technicians").status_code == 200
    assert reader.get("/api/v1/quote-items").status_code == 200
    assert_error_shape(post_order(reader, make_card()), 403, "AUTH_FORBIDDEN_SCOPE")
    assert_error_shape(
        reader.post("/api/v1/technicians", json={"name": "Lin"}), 403, "AUTH_FORBIDDEN_SCOPE"
    )


def test_the_whole_flow_from_assignment_to_invoice(api, lin, settings):
    settings.KIOKU_TAX_RATE = Decimal("0.05")
    make_item("SVC-CALL", "Service call", "600.00")
    make_item("SCREW", "Screw", "0.10")
    order_id = post_order(api, make_card()).json()["id"]

    assigned = api.post(
        f"/api/v1/service-orders/{order_id}/assign",
        json={"technician_id": lin.pk, "version": 1, "eta": ETA},
    )
    assert assigned.status_code == 200, assigned.content
    assert assigned.json()["technician"] == {"id": lin.pk, "name": "Lin"}
    assert move(api, order_id, "en_route", 2).json()["status"] == "en_route"
    for code in ["SVC-CALL", "SCREW"]:
        added = api.post(f"/api/v1/service-orders/{order_id}/lines", json={"item_code": code})
        assert added.status_code == 201, added.content
    assert move(api, order_id, "on_site", 3).status_code == 200
    done = move(api, order_id, "completed", 4, work_done="Re-seated the cable.", parts_used="none")
    assert done.status_code == 200, done.content
    settled = api.post(f"/api/v1/service-orders/{order_id}/settle", json={"share_percent": "40"})
    assert settled.status_code == 201 and settled.json()["amount"] == "240.04"
    invoiced = api.post(
        f"/api/v1/service-orders/{order_id}/invoice",
        json={"buyer_name": "Chen Mei", "buyer_tax_id": "04595257"},
    )
    assert invoiced.status_code == 201, invoiced.content

    body = api.get(f"/api/v1/service-orders/{order_id}").json()
    assert body["status"] == "completed" and body["version"] == 5
    assert [line["amount"] for line in body["lines"]] == ["600.00", "0.10"]
    assert body["totals"] == {
        "subtotal": "600.10",
        "tax_rate": "0.0500",
        "tax": "30.01",
        "total": "630.11",
    }
    assert body["invoice"]["number"] == invoiced.json()["number"]
    assert body["invoice"]["total"] == "630.11"
    assert body["settlement"]["amount"] == "240.04"
    assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [
        ("", "created"),
        ("created", "assigned"),
        ("assigned", "en_route"),
        ("en_route", "en_route"),  # the two lines
        ("en_route", "en_route"),
        ("en_route", "on_site"),
        ("on_site", "completed"),
        ("completed", "completed"),  # settled
        ("completed", "completed"),  # invoiced
    ]
    assert ProblemCard.objects.get().resolution == "Re-seated the cable."


def test_money_is_never_a_json_number(api, lin):
    make_item("SVC-CALL", "Service call", "600.00")
    order = order_in_status(OrderStatus.ASSIGNED, technician=lin)
    api.post(f"/api/v1/service-orders/{order.pk}/lines", json={"item_code": "SVC-CALL"})
    body = api.get(f"/api/v1/service-orders/{order.pk}").json()
    money = [*body["totals"].values(), *body["lines"][0].values()]
    assert not any(isinstance(value, float) for value in money)
    assert api.get("/api/v1/quote-items").json()[0]["unit_price"] == "600.00"


def test_an_illegal_transition_is_a_409(api):
    order = make_order()
    response = move(api, order.pk, "on_site", 1)
    body = assert_error_shape(response, 409, "DISPATCH_INVALID_TRANSITION")
    assert body["details"]["from"] == "created" and body["details"]["to"] == "on_site"


def test_an_unknown_status_is_a_validation_error(api):
    assert_error_shape(move(api, make_order().pk, "teleported", 1), 422, "VALIDATION_ERROR")


def test_completing_without_the_work_done_is_a_422(api, lin):
    order = order_in_status(OrderStatus.ON_SITE, technician=lin)
    response = move(api, order.pk, "completed", order.version, parts_used="none")
    body = assert_error_shape(response, 422, "DISPATCH_INVALID_ORDER")
    assert body["details"]["field"] == "work_done"


def test_a_stale_version_is_a_409_with_the_current_one(api, lin):
    order = make_order()
    body = {"technician_id": lin.pk, "version": 1}
    assert api.post(f"/api/v1/service-orders/{order.pk}/assign", json=body).status_code == 200
    stale = api.post(f"/api/v1/service-orders/{order.pk}/assign", json=body)
    assert assert_error_shape(stale, 409, "DISPATCH_CONFLICT")["details"] == {"version": 2}


def test_two_dispatchers_assigning_at_once_get_one_200_and_one_409(api, lin):
    sato = make_technician("Sato", areas=[DAAN], skills={})
    order = make_order()
    start = threading.Barrier(2)
    statuses = {}

    def dispatcher(technician):
        client = ApiClient(Client(), api.key)  # its own client, in its own thread and connection
        try:
            start.wait(timeout=10)
            response = client.post(
                f"/api/v1/service-orders/{order.pk}/assign",
                json={"technician_id": technician.pk, "version": 1},
            )
            statuses[technician.name] = (response.status_code, response.json().get("code"))
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(t,)) for t in (lin, sato)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses.values(), key=str) == [(200, None), (409, "DISPATCH_CONFLICT")]
    winner = next(name for name, (status, _) in statuses.items() if status == 200)
    order.refresh_from_db()
    assert (order.technician.name, order.version) == (winner, 2)


def test_candidates_come_with_their_reasons(api, lin):
    make_technician("Sato", areas=["Tokyo Shibuya"], skills={"kagiya": 5})
    order = make_order()
    body = api.get(f"/api/v1/service-orders/{order.pk}/candidates").json()
    assert [c["name"] for c in body] == ["Lin"]
    assert body[0]["reasons"][:2] == ["serves Taipei Da'an", "skill 4/5 for this lock"]


def test_the_list_filters_by_status_technician_and_date(api, lin):
    assigned = order_in_status(OrderStatus.ASSIGNED, technician=lin)
    post_order(api, make_card(), scheduled_start="2026-12-25T09:00:00+00:00", scheduled_end=None)
    assert api.get("/api/v1/service-orders").json()["count"] == 2
    by_status = api.get("/api/v1/service-orders?status=assigned").json()
    assert [o["id"] for o in by_status["items"]] == [assigned.pk]
    assert api.get(f"/api/v1/service-orders?technician_id={lin.pk}").json()["count"] == 1
    assert api.get("/api/v1/service-orders?date=2026-12-25").json()["count"] == 1
    assert_error_shape(api.get("/api/v1/service-orders?status=gone"), 422, "VALIDATION_ERROR")


def test_lines_of_a_completed_order_are_a_409(api):
    make_item()
    order = order_in_status(OrderStatus.COMPLETED)
    response = api.post(f"/api/v1/service-orders/{order.pk}/lines", json={"item_code": "SVC-CALL"})
    assert_error_shape(response, 409, "DISPATCH_ORDER_FROZEN")


def test_a_line_can_be_taken_off_an_open_order(api):
    make_item()
    order = make_order()
    line_id = api.post(
        f"/api/v1/service-orders/{order.pk}/lines", json={"item_code": "SVC-CALL", "quantity": 2}
    ).json()["lines"][0]["id"]
    response = api.delete(f"/api/v1/service-orders/{order.pk}/lines/{line_id}")
    assert response.status_code == 200 and response.json()["lines"] == []


def test_settling_twice_is_a_409(api):
    order = order_in_status(OrderStatus.COMPLETED)
    first = api.post(f"/api/v1/service-orders/{order.pk}/settle", json={"fee": "300"})
    assert first.status_code == 201 and first.json()["amount"] == "300.00"
    again = api.post(f"/api/v1/service-orders/{order.pk}/settle", json={"fee": "300"})
    assert_error_shape(again, 409, "DISPATCH_ALREADY_SETTLED")


def test_invoicing_an_open_order_or_a_bad_tax_id_is_refused(api):
    make_item()
    open_order = make_order()
    response = api.post(
        f"/api/v1/service-orders/{open_order.pk}/invoice", json={"buyer_name": "Chen Mei"}
    )
    assert_error_shape(response, 409, "DISPATCH_ORDER_NOT_COMPLETED")
    done = order_in_status(OrderStatus.COMPLETED, order=make_order(make_card()))
    response = api.post(
        f"/api/v1/service-orders/{done.pk}/invoice",
        json={"buyer_name": "Kagiya Ltd", "buyer_tax_id": "04595258"},
    )
    assert_error_shape(response, 422, "DISPATCH_INVALID_TAX_ID")


def test_an_unknown_order_or_card_is_a_404(api):
    assert_error_shape(api.get("/api/v1/service-orders/999999"), 404, "NOT_FOUND")
    assert_error_shape(
        api.post("/api/v1/service-orders/999999/assign", json={"technician_id": 1, "version": 1}),
        404,
        "NOT_FOUND",
    )
    response = api.post("/api/v1/service-orders", json={"problem_card_id": 999999})
    assert_error_shape(response, 404, "DISPATCH_NOT_FOUND")
    assert not ServiceOrder.objects.exists()


# --- Technicians and quote items ------------------------------------------------------------------


def test_a_technician_is_created_read_and_edited(api):
    created = api.post(
        "/api/v1/technicians",
        json={
            "name": "Lin Wei",
            "service_areas": [DAAN, "Taipei Xinyi"],
            "rating": "4.8",
            "skills": [
                {"brand": "Kagiya", "level": 4},
                {"brand": "KAGIYA", "symptom": "battery", "level": 5},
            ],
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["rating"] == "4.80" and body["daily_capacity"] == 4
    assert body["skills"] == [
        {"brand_key": "kagiya", "symptom": "", "level": 4},
        {"brand_key": "kagiya", "symptom": "battery", "level": 5},
    ]
    technician_id = body["id"]

    patched = api.patch(
        f"/api/v1/technicians/{technician_id}", json={"daily_capacity": 6, "is_active": False}
    )
    assert patched.status_code == 200, patched.content
    assert (patched.json()["daily_capacity"], patched.json()["is_active"]) == (6, False)
    assert len(patched.json()["skills"]) == 2  # skills not given: kept
    again = api.get(f"/api/v1/technicians/{technician_id}").json()
    assert again["service_areas"] == [DAAN, "Taipei Xinyi"]


def test_the_technician_list_filters_by_area_brand_and_activity(api, lin):
    make_technician("Sato", areas=["Tokyo Shibuya"], skills={"lumio": 3})
    assert [
        t["name"] for t in api.get("/api/v1/technicians?area=Tokyo Shibuya").json()["items"]
    ] == ["Sato"]
    assert [t["name"] for t in api.get("/api/v1/technicians?brand=KAGIYA").json()["items"]] == [
        "Lin"
    ]
    assert api.get("/api/v1/technicians?is_active=false").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": " "}, "name"),
        ({"name": "Lin", "rating": "5.5"}, "rating"),
        ({"name": "Lin", "daily_capacity": 0}, "daily_capacity"),
        ({"name": "Lin", "latitude": 25.0}, "longitude"),
        (
            {"name": "Lin", "skills": [{"brand": "Kagiya", "symptom": "on_fire", "level": 3}]},
            "skills.symptom",
        ),
    ],
)
def test_a_bad_technician_is_a_422_with_the_field(api, body, field):
    response = api.post("/api/v1/technicians", json=body)
    assert (
        assert_error_shape(response, 422, "DISPATCH_INVALID_TECHNICIAN")["details"]["field"]
        == field
    )


def test_quote_items_are_the_active_ones_unless_asked(api):
    make_item("SVC-CALL", "Service call", "600.00")
    make_item("OLD", "Old part", "10.00").__class__.objects.filter(code="OLD").update(
        is_active=False
    )
    assert [i["code"] for i in api.get("/api/v1/quote-items").json()] == ["SVC-CALL"]
    everything = api.get("/api/v1/quote-items?include_inactive=true").json()
    assert [i["code"] for i in everything] == ["OLD", "SVC-CALL"]
