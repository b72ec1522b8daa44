"""The answer API: POST /ask, POST /ask/stream, GET /answers/{id}, POST /answers/{id}/feedback."""

import json

import pytest

from knowledge.answer.answering import EXTRACTIVE_LABEL, NO_RELEVANT_DOCUMENTS
from knowledge.models import Answer
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "How do I replace the batteries?"


def sse_events(response) -> list[tuple[str, dict]]:
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_ask_needs_a_key(api_as, embedded_manual):
    assert_error_shape(
        api_as().post("/api/v1/ask", json={"question": QUESTION}), 401, "AUTH_REQUIRED"
    )


def test_ask_answers_offline_with_citations_and_stores_the_key(api_as, embedded_manual):
    response = api_as("read").post("/api/v1/ask", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mode"] == "offline" and body["offline"] is True
    assert body["outcome"] == "answered"
    assert body["answer"].startswith(EXTRACTIVE_LABEL["en"])
    cited = body["citations"][0]
    assert cited["number"] == 1 and cited["cited"] is True
    chunk = embedded_manual.chunks.get(pk=cited["chunk_id"])
    assert "batteries" in chunk.content.lower()
    assert cited["quoted_text"] == chunk.content
    assert len(body["sources"]) >= len(body["citations"])
    stored = Answer.objects.get(pk=body["id"])
    assert stored.channel == "api" and stored.api_key.name.startswith("test-key")


def test_ask_without_relevant_documents_says_so(api, embedded_manual):
    body = api.post("/api/v1/ask", json={"question": "What is the capital of France?"}).json()
    assert body["outcome"] == "no_relevant"
    assert body["answer"] == NO_RELEVANT_DOCUMENTS["en"]
    assert body["citations"] == []


@pytest.mark.parametrize(
    ("payload", "code", "aliases"),
    [
        ({"question": "  "}, "ASK_EMPTY_QUESTION", ["VECTOR_INDEX_EMPTY_QUESTION"]),
        ({"question": QUESTION, "top_k": 0}, "ASK_INVALID_TOP_K", ["VECTOR_INDEX_INVALID_TOP_K"]),
        ({"question": QUESTION, "top_k": 21}, "ASK_INVALID_TOP_K", ["VECTOR_INDEX_INVALID_TOP_K"]),
        ({"question": QUESTION, "filters": {"colour": "red"}}, "SEARCH_INVALID_FILTER", None),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/ask", "/api/v1/ask/stream"])
def test_bad_questions_get_their_error_code(api, embedded_manual, payload, code, aliases, path):
    # The ask codes were named VECTOR_INDEX_*: those names stay in "aliases" for old clients.
    body = assert_error_shape(api.post(path, json=payload), 400, code)
    assert body.get("aliases") == aliases


def test_a_failing_model_is_a_502_with_the_llm_code(api, embedded_manual, openai_stub, settings):
    settings.KIOKU_CHAT_MAX_ATTEMPTS = 1

    def broken(body):
        raise RuntimeError("down")

    openai_stub.chat_reply = broken
    response = api.post("/api/v1/ask", json={"question": QUESTION})
    body = assert_error_shape(response, 502, "ASK_LLM_API_ERROR")
    assert body["aliases"] == ["VECTOR_INDEX_LLM_API_ERROR"]


def test_the_stream_is_server_sent_events(api, embedded_manual, openai_stub):
    openai_stub.chat_reply = "Replace all eight AA batteries at once [1]."
    response = api.post("/api/v1/ask/stream", json={"question": QUESTION})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = sse_events(response)
    assert events[0][0] == "sources" and events[0][1]["mode"] == "online"
    assert "".join(data["text"] for kind, data in events if kind == "delta") == (
        openai_stub.chat_reply
    )
    kind, done = events[-1]
    assert kind == "done" and done["cited"] == [1]
    assert api.get(f"/api/v1/answers/{done['answer_id']}").json()["answer"] == done["answer"]


def test_get_answer_and_404(api, embedded_manual):
    answer_id = api.post("/api/v1/ask", json={"question": QUESTION}).json()["id"]
    body = api.get(f"/api/v1/answers/{answer_id}").json()
    assert body["id"] == answer_id and body["question"] == QUESTION
    assert_error_shape(api.get("/api/v1/answers/999999"), 404, "NOT_FOUND")


def test_feedback_marks_the_answer_for_curation(api_as, embedded_manual):
    client = api_as("read")
    answer_id = client.post("/api/v1/ask", json={"question": QUESTION}).json()["id"]
    response = client.post(
        f"/api/v1/answers/{answer_id}/feedback",
        json={"helpful": False, "comment": "Says AA, the KG-200 takes AAA"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["feedback"] == "not_helpful"
    stored = Answer.objects.get(pk=answer_id)
    assert stored.feedback_comment == "Says AA, the KG-200 takes AAA"
    assert stored.feedback_by.startswith("api:test-key")
    assert_error_shape(
        client.post("/api/v1/answers/999999/feedback", json={"helpful": True}), 404, "NOT_FOUND"
    )
    assert_error_shape(
        client.post(f"/api/v1/answers/{answer_id}/feedback", json={}), 422, "VALIDATION_ERROR"
    )
