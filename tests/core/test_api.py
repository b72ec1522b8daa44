"""The one error shape: {"code", "message", "details"} for every failure under /api/."""

import pytest

from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db


def test_whoami_answers_with_the_key_in_use(api_as):
    response = api_as("read", "write").get("/api/v1/whoami")
    assert response.status_code == 200
    assert response.json()["scopes"] == ["read", "write"]


def test_unknown_route_gets_the_error_shape(api):
    assert_error_shape(api.get("/api/v1/no-such-thing"), 404, "NOT_FOUND")


def test_unknown_route_without_a_key_is_still_json(client):
    assert_error_shape(client.get("/api/v1/does/not/exist"), 404, "NOT_FOUND")


def test_missing_key_is_401(api_as):
    body = assert_error_shape(api_as().get("/api/v1/whoami"), 401, "AUTH_REQUIRED")
    assert "Bearer" in body["message"]


def test_malformed_authorization_header_is_401(client):
    response = client.get("/api/v1/whoami", headers={"Authorization": "Token abc"})
    assert_error_shape(response, 401, "AUTH_REQUIRED")


def test_unknown_key_is_401(client):
    response = client.get("/api/v1/whoami", headers={"Authorization": "Bearer kioku_nope"})
    assert_error_shape(response, 401, "AUTH_INVALID_KEY")


def test_revoked_key_is_401(client, make_api_key):
    from core.models import ApiKey
    from core.services import api_key_revoke

    raw = make_api_key("read", name="soon-revoked")
    api_key_revoke(api_key=ApiKey.objects.get(name="soon-revoked"))
    response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {raw}"})
    assert_error_shape(response, 401, "AUTH_INVALID_KEY")


def test_a_used_key_revoked_in_this_process_stops_at_once(client, make_api_key):
    from core.models import ApiKey
    from core.services import api_key_revoke

    raw = make_api_key("read", name="cached-then-revoked")
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/whoami", headers=headers).status_code == 200  # now cached
    api_key_revoke(api_key=ApiKey.objects.get(name="cached-then-revoked"))
    assert_error_shape(client.get("/api/v1/whoami", headers=headers), 401, "AUTH_INVALID_KEY")


def test_a_key_deleted_elsewhere_stops_once_the_cache_expires(client, make_api_key, settings):
    from core.models import ApiKey

    raw = make_api_key("read", name="deleted-elsewhere")
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/whoami", headers=headers).status_code == 200
    # Another process deletes it: a raw DELETE sends no signal to this process.
    ApiKey.objects.filter(name="deleted-elsewhere")._raw_delete(ApiKey.objects.db)
    assert client.get("/api/v1/whoami", headers=headers).status_code == 200  # trusted for a while
    settings.KIOKU_API_KEY_CACHE_SECONDS = 0
    assert_error_shape(client.get("/api/v1/whoami", headers=headers), 401, "AUTH_INVALID_KEY")


def test_wrong_method_is_405_in_the_error_shape(api):
    assert_error_shape(api.post("/api/v1/whoami", json={}), 405, "METHOD_NOT_ALLOWED")


def test_openapi_docs_are_served(client):
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/whoami" in schema["paths"]


def test_bad_json_is_400_invalid_json(api):
    response = api.post("/api/v1/api-keys", data="{not json", content_type="application/json")
    assert_error_shape(response, 400, "INVALID_JSON")


def test_validation_error_is_422_with_field_details(api):
    response = api.post("/api/v1/api-keys", json={"name": "bot", "scopes": ["root"]})
    body = assert_error_shape(response, 422, "VALIDATION_ERROR")
    assert any(error["loc"][-2:] == ["scopes", "0"] for error in body["details"]["errors"])


def test_missing_body_is_422(api):
    response = api.post("/api/v1/api-keys", data="", content_type="application/json")
    assert_error_shape(response, 422, "VALIDATION_ERROR")


def test_read_key_on_an_admin_endpoint_is_403(api_as):
    response = api_as("read", "write").post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["read"]}
    )
    body = assert_error_shape(response, 403, "AUTH_FORBIDDEN_SCOPE")
    assert body["details"]["required_scope"] == "admin"


def test_admin_creates_a_key_that_works_once_shown(api, client):
    response = api.post("/api/v1/api-keys", json={"name": "line-bot", "scopes": ["read"]})
    assert response.status_code == 201
    created = response.json()
    assert created["key"].startswith(created["prefix"])
    whoami = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {created['key']}"})
    assert whoami.json() == {"name": "line-bot", "scopes": ["read"]}
    listed = api.get("/api/v1/api-keys").json()
    assert "key" not in listed[0]


def test_duplicate_key_name_is_a_409_conflict(api):
    api.post("/api/v1/api-keys", json={"name": "twin", "scopes": ["read"]})
    response = api.post("/api/v1/api-keys", json={"name": "twin", "scopes": ["read"]})
    assert "already exists" in assert_error_shape(response, 409, "API_KEY_INVALID")["message"]


def test_revoking_an_unknown_key_is_404(api):
    assert_error_shape(api.delete("/api/v1/api-keys/999999"), 404, "NOT_FOUND")


def test_unexpected_exception_is_a_json_500_not_html(api, monkeypatch):
    import core.api

    def explode(**kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(core.api, "api_key_create", explode)
    api.client.raise_request_exception = False
    response = api.post("/api/v1/api-keys", json={"name": "x", "scopes": ["read"]})
    body = assert_error_shape(response, 500, "INTERNAL_ERROR")
    assert "kaboom" not in body["message"]
