"""core/edge.py: NUL, lone surrogates, encodings and depth of what clients send, refused at the
API's edge with a stable code, and nothing written. One test per finding of issue 16."""

import json

import pytest

from knowledge.models import Answer, KnowledgeSource
from sessions_app.models import ChatSession, Message

pytestmark = pytest.mark.django_db


def post_raw(api, path, body: bytes):
    return api.post(path, data=body, content_type="application/json")


def assert_invalid_character(response, location):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "TEXT_INVALID_CHARACTER"
    assert body["details"]["location"] == location
    return body


def test_nul_in_a_json_string_is_refused_before_asking(api):
    response = api.post("/api/v1/ask", json={"question": '"\x00'})
    assert_invalid_character(response, ["body", "question"])
    assert not Answer.objects.exists()


def test_lone_surrogate_in_a_json_string_is_refused(api):
    response = post_raw(api, "/api/v1/ask", b'{"question": "a\\ud800b"}')
    body = assert_invalid_character(response, ["body", "question"])
    assert body["details"]["character"] == "U+D800"


def test_nul_in_a_nested_metadata_key_is_refused_and_nothing_is_stored(api):
    payload = {"title": "T", "text": "hello", "metadata": {"a": [{"b\x00": 1}]}}
    response = api.post("/api/v1/sources", json=payload)
    body = assert_invalid_character(response, ["body", "metadata", "a", 0, "b\ufffd"])
    assert body["details"]["character"] == "U+0000"
    assert not KnowledgeSource.objects.exists()


def test_nul_in_patched_metadata_is_refused(api):
    source = KnowledgeSource.objects.create(title="T", uri="u", metadata={})
    response = api.patch(f"/api/v1/sources/{source.pk}", json={"metadata": {"k": "v\x00"}})
    assert_invalid_character(response, ["body", "metadata", "k"])
    source.refresh_from_db()
    assert source.metadata == {}


def test_nul_in_a_query_parameter_is_refused(api):
    response = api.get("/api/v1/sources?q=abc%00")
    assert_invalid_character(response, ["query", "q"])


def test_nul_in_a_session_message_is_refused_and_no_session_is_created(api):
    payload = {"messages": [{"content": "hi"}, {"content": "there\x00"}]}
    response = api.post("/api/v1/sessions/s1/messages", json=payload)
    assert_invalid_character(response, ["body", "messages", 1, "content"])
    assert not ChatSession.objects.exists()
    assert not Message.objects.exists()


def test_nul_in_a_path_parameter_is_refused(api):
    response = api.get("/api/v1/sessions/a%00b")
    assert_invalid_character(response, ["path", "key"])


def test_the_edge_rule_covers_string_path_parameters(rf):
    from core.edge import path_params_checked
    from core.errors import ApiError

    request = rf.get("/api/v1/x")
    request.resolver_match = type("Match", (), {"kwargs": {"name": "a\x00"}})()
    with pytest.raises(ApiError) as raised:
        path_params_checked(lambda request: None)(request)
    assert raised.value.details["location"] == ["path", "name"]


def test_path_parameters_are_checked_after_authentication(api_as):
    assert api_as().get("/api/v1/sessions/a%00b").status_code == 401


def test_nul_in_a_form_field_is_refused(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("a.txt", b"hello", content_type="text/plain")
    response = api.post("/api/v1/sources/upload", data={"file": upload, "title": "x\x00"})
    assert_invalid_character(response, ["form", "title"])
    assert not KnowledgeSource.objects.exists()


def test_a_body_that_is_not_utf8_is_refused_with_its_own_code(api):
    response = post_raw(api, "/api/v1/ask", b'{"question": "caf\xe9"}')
    assert response.status_code == 400
    assert response.json()["code"] == "TEXT_INVALID_ENCODING"


def test_json_nested_a_thousand_deep_is_refused(api):
    nested = "[" * 1000 + "]" * 1000
    response = post_raw(
        api,
        "/api/v1/sources",
        f'{{"title": "t", "text": "x", "metadata": {{"a": {nested}}}}}'.encode(),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "JSON_TOO_DEEP"
    assert not KnowledgeSource.objects.exists()


def test_json_nested_past_the_parser_stack_is_refused(api):
    nested = "[" * 100_000 + "]" * 100_000
    response = post_raw(api, "/api/v1/ask", nested.encode())
    assert response.status_code == 422
    assert response.json()["code"] == "JSON_TOO_DEEP"


def test_nan_is_not_json(api):
    response = post_raw(api, "/api/v1/search", b'{"query": "x", "min_similarity": NaN}')
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


def test_plain_text_still_passes_the_edge(api):
    payload = {"title": "T", "text": "hello\tworld ✓ 日本語", "metadata": {"tags": ["a"]}}
    response = api.post("/api/v1/sources", json=payload)
    assert response.status_code == 201, response.content
    assert json.loads(response.content)["source"]["metadata"] == {"tags": ["a"]}


@pytest.mark.parametrize("query", ["q=%FF%FE", "q=%ED%A0%80", "q=%C0%80"])
def test_a_query_string_that_is_not_utf8_is_refused(api, query):
    response = api.get(f"/api/v1/sources?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "TEXT_INVALID_ENCODING"


def test_a_utf8_query_string_passes(api):
    assert api.get("/api/v1/sources?q=%E6%97%A5%E6%9C%AC+x").status_code == 200
