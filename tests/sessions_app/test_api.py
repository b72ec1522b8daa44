import pytest

from knowledge.models import KnowledgeSource
from sessions_app.models import ChatSession, Message
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db

URL = "/api/v1/sessions/discord:support:t-1/messages"


def test_append_creates_the_session_and_returns_the_context(api):
    response = api.post(
        URL,
        json={
            "messages": [
                {"content": "E-21 on my KG-200", "author": "alice", "external_id": "m1"},
                {"content": "Check the strike plate.", "role": "assistant", "is_bot": True},
            ]
        },
    )

    body = response.json()
    assert response.status_code == 201
    assert body["created"] is True and body["accepted"] == 2
    assert [m["content"] for m in body["context"]] == [
        "E-21 on my KG-200",
        "Check the strike plate.",
    ]
    assert ChatSession.objects.get().channel == "support"


def test_a_retried_append_answers_200_and_names_the_duplicates(api):
    payload = {"messages": [{"content": "hello", "external_id": "m1"}]}
    api.post(URL, json=payload)

    response = api.post(URL, json=payload)

    assert response.status_code == 200
    assert response.json()["accepted"] == 0
    assert response.json()["duplicate_external_ids"] == ["m1"]
    assert Message.objects.count() == 1


def test_append_needs_the_write_scope(api_as):
    response = api_as("read").post(URL, json={"messages": [{"content": "hi"}]})

    assert response.status_code == 403
    assert response.json()["code"] == "AUTH_FORBIDDEN_SCOPE"


def test_too_many_messages_get_a_clear_error(api, settings):
    settings.KIOKU_SESSION_MAX_APPEND = 2

    response = api.post(URL, json={"messages": [{"content": "m"}] * 3})

    assert response.status_code == 413
    assert response.json()["code"] == "SESSION_TOO_MANY_MESSAGES"
    assert response.json()["details"] == {"count": 3, "limit": 2}


@pytest.mark.parametrize(
    ("url", "payload", "status", "code"),
    [
        (
            "/api/v1/sessions/bad key/messages",
            {"messages": [{"content": "x"}]},
            422,
            "SESSION_INVALID_KEY",
        ),
        (URL, {"messages": []}, 422, "SESSION_NO_MESSAGES"),
        (URL, {"messages": [{"content": "x", "role": "admin"}]}, 422, "SESSION_INVALID_ROLE"),
        (URL, {"messages": "nope"}, 422, "VALIDATION_ERROR"),
    ],
)
def test_append_errors_have_stable_codes(api, url, payload, status, code):
    response = api.post(url, json=payload)

    assert response.status_code == status
    assert response.json()["code"] == code


def test_list_filters_by_status_platform_and_channel(api):
    make_session("discord:support:t-1", platform="discord", channel="support")
    make_session("slack:sales", platform="slack", channel="sales")

    everything = api.get("/api/v1/sessions").json()
    slack = api.get("/api/v1/sessions?platform=slack").json()
    support = api.get("/api/v1/sessions?channel=support&status=active").json()
    archived = api.get("/api/v1/sessions?status=archived").json()

    assert everything["count"] == 2
    assert [s["key"] for s in slack["items"]] == ["slack:sales"]
    assert [s["key"] for s in support["items"]] == ["discord:support:t-1"]
    assert support["items"][0]["message_count"] == 5
    assert archived["count"] == 0


def test_get_returns_the_session_with_a_page_of_messages(api):
    make_session()

    response = api.get("/api/v1/sessions/discord:support:t-1?limit=2&offset=1")

    body = response.json()
    assert response.status_code == 200
    assert body["messages"]["count"] == 5
    assert [m["author"] for m in body["messages"]["items"]] == ["kioku-bot", "alice"]


def test_an_unknown_session_is_404_with_its_code(api):
    response = api.get("/api/v1/sessions/web:nobody")

    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"


def test_archive_now_archives_and_reports_the_outcome(api):
    session = make_session()

    response = api.post("/api/v1/sessions/discord:support:t-1/archive")

    body = response.json()
    assert response.status_code == 200
    assert body["outcome"] == "archived" and body["messages"] == 5
    assert body["source_id"] == KnowledgeSource.objects.get().pk
    session.refresh_from_db()
    assert session.source_id == body["source_id"]


def test_delete_needs_admin_and_removes_the_knowledge(api, api_as):
    make_session()
    api.post("/api/v1/sessions/discord:support:t-1/archive")

    refused = api_as("write").delete("/api/v1/sessions/discord:support:t-1")
    response = api.delete("/api/v1/sessions/discord:support:t-1")

    assert refused.status_code == 403
    assert response.status_code == 200
    assert response.json() == {"deleted_messages": 5, "deleted_sources": 1}
    assert not ChatSession.objects.exists() and not KnowledgeSource.objects.exists()
