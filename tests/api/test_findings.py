"""Regression tests for what schemathesis found against /api/v1 (issue 16): each was a 500, a
valid request refused, an invalid one accepted or a status the schema did not document."""

import pytest

from config.api import api as ninja_api
from core.pagination import OFFSET_MAX
from sessions_app.models import Message

pytestmark = pytest.mark.django_db

HUGE = "23839253395475695720216030871552"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/sessions?offset={HUGE}",
        f"/api/v1/sources?offset={OFFSET_MAX + 1}",
        "/api/v1/problem-cards?offset=-1",
        "/api/v1/technicians?limit=0",
        "/api/v1/service-orders?limit=100000",
        "/api/v1/index/dead-letters?offset=7337131089345293320192",
    ],
)
def test_pagination_past_its_bounds_is_a_422(api, path):
    response = api.get(path)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_chunk_pages_past_bigint_are_a_422(api):
    from knowledge.models import KnowledgeSource

    source = KnowledgeSource.objects.create(title="T", uri="u")
    response = api.get(f"/api/v1/sources/{source.pk}/chunks?offset=7337131089345293320192")
    assert response.status_code == 422


def test_an_unknown_enum_value_is_a_422(api):
    response = api.get("/api/v1/sources?status=bogus")
    assert response.status_code == 422
    assert response.json()["details"]["errors"][0]["loc"] == ["query", "status"]


def test_nul_in_a_feedback_comment_is_refused(api):
    from knowledge.models import Answer

    answer = Answer.objects.create(question="q", answer="a", top_k=5)
    response = api.post(
        f"/api/v1/answers/{answer.pk}/feedback", json={"helpful": False, "comment": "x\x00"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "TEXT_INVALID_CHARACTER"
    answer.refresh_from_db()
    assert answer.feedback_comment == ""


def test_zero_is_not_a_boolean(api):
    from knowledge.models import Answer

    answer = Answer.objects.create(question="q", answer="a", top_k=5)
    response = api.post(f"/api/v1/answers/{answer.pk}/feedback", json={"helpful": 0})
    assert response.status_code == 422


def test_a_number_is_not_a_date(api):
    assert api.get("/api/v1/service-orders?date=0").status_code == 422
    assert api.get("/api/v1/service-orders?date=2026-12-24").status_code == 200


def test_a_body_that_is_an_array_is_refused(api):
    response = api.post("/api/v1/index/dead-letters/retry", json=[])
    assert response.status_code == 422


def test_a_search_date_with_an_offset_postgresql_refuses_is_read_in_utc(api):
    from knowledge.models import KnowledgeSource

    KnowledgeSource.objects.create(title="T", uri="u")
    response = api.post(
        "/api/v1/search",
        json={
            "query": "x",
            "mode": "keyword",
            "filters": {"created_from": "0128-04-20T17:41:18-23:22"},
        },
    )
    assert response.status_code != 500, response.content
    assert response.status_code in (200, 409)


def test_a_message_time_with_a_large_offset_is_stored_in_utc(api):
    payload = {"messages": [{"content": "hi", "created_at": "2026-01-01T00:00:00-23:30"}]}
    response = api.post("/api/v1/sessions/tz/messages", json=payload)
    assert response.status_code == 201, response.content
    stored = Message.objects.get().created_at
    assert stored.isoformat().startswith("2026-01-01T23:30:00")


def test_a_multipart_body_without_a_boundary_is_a_400(api):
    response = api.client.post(
        "/api/v1/problem-cards/1/photos",
        data=b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\nx\r\n--x--\r\n",
        content_type="multipart/form-data",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"


def test_a_405_says_what_is_allowed(api):
    response = api.client.generic("TRACE", "/api/v1/whoami")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_a_question_of_ten_megabytes_is_refused(api):
    response = api.post("/api/v1/ask", json={"question": "a" * 10_000_000})
    assert response.status_code == 422


def test_a_message_of_ten_megabytes_is_refused_and_nothing_is_written(api):
    payload = {"messages": [{"content": "a" * 10_000_000}]}
    response = api.post("/api/v1/sessions/big/messages", json=payload)
    assert response.status_code == 413
    assert response.json()["code"] == "SESSION_MESSAGE_TOO_LONG"
    assert not Message.objects.exists()


def test_every_operation_documents_its_errors_with_the_error_shape():
    schema = ninja_api.get_openapi_schema()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = {str(status): body for status, body in operation["responses"].items()}
            for status in ("401", "403", "429", "503"):
                assert responses[status]["content"]["application/json"]["schema"] == error, (
                    method,
                    path,
                    status,
                )
            assert "Retry-After" in responses["429"]["headers"]
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), (method, path)


def test_pagination_bounds_are_in_the_schema():
    schema = ninja_api.get_openapi_schema()
    parameters = schema["paths"]["/api/v1/sessions"]["get"]["parameters"]
    bounds = {p["name"]: p["schema"] for p in parameters if p["name"] in ("limit", "offset")}
    assert bounds["offset"]["maximum"] == OFFSET_MAX < 2**63
    assert bounds["limit"]["maximum"] == 200


def test_a_source_id_filter_past_bigint_is_refused(api):
    response = api.post("/api/v1/search", json={"query": "x", "filters": {"source_ids": [2**63]}})
    assert response.status_code == 400
    assert response.json()["code"] == "SEARCH_INVALID_FILTER"


def test_ten_megabytes_of_single_line_text_is_ingested(api):
    response = api.post("/api/v1/sources", json={"title": "one line", "text": "a" * 10_000_000})
    assert response.status_code == 201, response.content[:500]
    assert response.json()["chunks"] > 1
