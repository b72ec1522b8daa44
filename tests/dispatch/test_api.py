"""The problem-card API: routes, scopes, status codes and error shapes."""

import pytest

from dispatch.models import CardStatus, ProblemCard
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from tests.dispatch.factories import make_card, make_case
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db(transaction=True)

REPORT = {
    "brand": "Kagiya",
    "model": "KG-200",
    "symptom": "wont_unlock",
    "error_code": "e21",
    "description": "I typed my PIN, the screen says E-21, and the bolt stays locked.",
    "customer": {"name": "Chen Mei", "phone": "0912-345-678", "service_area": "Taipei Da'an"},
}


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def test_a_report_creates_a_card_and_can_be_diagnosed_at_once(api):
    make_case(resolution="Re-seated the motor cable.", error_code="E-21")
    embedding_run()
    response = api.post("/api/v1/problem-cards", json={**REPORT, "diagnose": True})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["error_code"] == "E-21" and body["model"] == "KG-200"
    assert body["status"] == CardStatus.DIAGNOSED and body["version"] == 1
    assert body["diagnosis"]["layer"] == 1
    assert body["diagnosis"]["cases"][0]["resolution"] == "Re-seated the motor cable."
    assert body["customer"]["service_area"] == "Taipei Da'an"
    assert body["is_searchable_by_meaning"] is False  # the pipeline has not embedded it yet


def test_a_report_without_diagnosis_has_none(api):
    body = api.post("/api/v1/problem-cards", json=REPORT).json()
    assert body["diagnosis"] == {} and body["status"] == "open"


def test_a_bad_report_is_a_422_with_the_field(api):
    response = api.post("/api/v1/problem-cards", json={**REPORT, "symptom": "on_fire"})
    body = assert_error_shape(response, 422, "DISPATCH_INVALID_CARD")
    assert body["details"]["field"] == "symptom"
    assert not ProblemCard.objects.exists()


def test_reading_needs_a_key_and_writing_the_write_scope(api_as, client):
    assert client.get("/api/v1/problem-cards").status_code == 401
    reader = api_as("read")
    assert reader.get("/api/v1/problem-cards").status_code == 200
    assert_error_shape(
        reader.post("/api/v1/problem-cards", json=REPORT), 403, "AUTH_FORBIDDEN_SCOPE"
    )


def test_the_list_filters_by_status_brand_and_error_code(api):
    make_card(error_code="E21")
    make_card(brand="Lumio", lock_model="LM5", description="App cannot connect.")
    assert api.get("/api/v1/problem-cards?brand=KAGIYA").json()["count"] == 1
    assert api.get("/api/v1/problem-cards?error_code=e 21").json()["count"] == 1
    assert api.get("/api/v1/problem-cards?status=resolved").json()["count"] == 0
    assert_error_shape(api.get("/api/v1/problem-cards?status=gone"), 422, "VALIDATION_ERROR")


def test_patch_with_a_stale_version_is_a_409(api):
    card = make_card()
    first = api.patch(f"/api/v1/problem-cards/{card.pk}", json={"version": 1, "model": "KG-300"})
    assert first.status_code == 200 and first.json()["model"] == "KG-300"
    stale = api.patch(f"/api/v1/problem-cards/{card.pk}", json={"version": 1, "model": "KG-100"})
    body = assert_error_shape(stale, 409, "DISPATCH_CONFLICT")
    assert body["details"]["version"] == 2


def test_resolve_then_similar_finds_the_case(api):
    case = make_card(error_code="E21")
    response = api.post(
        f"/api/v1/problem-cards/{case.pk}/resolve", json={"resolution": "Re-seated the cable."}
    )
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    embedding_run()
    card = make_card(error_code="E-21")
    body = api.get(f"/api/v1/problem-cards/{card.pk}/similar").json()
    assert [c["card_id"] for c in body["cases"]] == [case.pk]


def test_resolving_without_a_resolution_is_a_422(api):
    card = make_card()
    response = api.post(f"/api/v1/problem-cards/{card.pk}/resolve", json={"resolution": ""})
    assert_error_shape(response, 422, "DISPATCH_RESOLUTION_REQUIRED")


def test_an_unknown_card_is_a_404(api):
    assert_error_shape(api.get("/api/v1/problem-cards/999999"), 404, "NOT_FOUND")
    assert_error_shape(api.post("/api/v1/problem-cards/999999/diagnose"), 404, "NOT_FOUND")
