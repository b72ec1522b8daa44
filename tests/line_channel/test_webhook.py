"""The LINE webhook: signed or refused before anything is stored, each event handled once, a
text message appended to the user's session and answered with its sources through the Messaging
API (a local stub), and a reply that fails kept with the message and the answer."""

import json

import pytest

from knowledge.models import Answer
from line_channel.models import LineEvent, LineReply
from sessions_app.models import Message as ChatMessage
from tests.line_channel.conftest import line_event, sign, text_event, webhook_body

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK = "/integrations/line/webhook"


def post(client, body: bytes, signature: str | None = None, **headers):
    if signature is not None:
        headers["HTTP_X_LINE_SIGNATURE"] = signature
    return client.post(WEBHOOK, data=body, content_type="application/json", **headers)


def test_a_signed_question_is_stored_answered_with_its_sources_and_replied(
    client, line_stub, embedded_manual
):
    body = webhook_body(text_event("What does E-21 mean on the KG-200?"))
    response = post(client, body, sign(body))
    assert response.status_code == 200 and response.json() == {"new_events": 1}
    event = LineEvent.objects.get()
    assert (event.kind, event.message_kind, event.status) == ("message", "text", "processed")
    message, said = ChatMessage.objects.order_by("id")
    assert (message.session.key, message.external_id) == ("line:U1234567890abcdef", "555001")
    assert (said.session_id, said.is_bot, said.role) == (message.session_id, True, "assistant")
    answer = Answer.objects.get()
    assert answer.channel == "line" and answer.outcome == "answered"
    [sent] = line_stub.replies()
    assert sent["authorization"] == "Bearer test-access-token"
    assert sent["body"]["replyToken"] == "reply-01JTEXT000000000000000001"
    text = sent["body"]["messages"][0]["text"]
    assert "E-21" in text and "Sources: KG-200 Manual" in text
    assert said.content == text  # staff read the reply in the session too
    assert LineReply.objects.get().status == "sent"


def test_a_question_in_japanese_gets_its_sources_labelled_in_japanese(
    client, line_stub, embedded_manual
):
    body = webhook_body(text_event("KG-200 の E-21 エラーは何ですか？"))
    post(client, body, sign(body))
    text = line_stub.replies()[0]["body"]["messages"][0]["text"]
    assert Answer.objects.get().language == "ja"
    assert "出典" in text or "該当する情報" in text


def test_a_missing_signature_is_refused_and_nothing_is_stored(client, line_stub):
    response = post(client, webhook_body(text_event("hello")))
    assert response.status_code == 401 and response.json()["code"] == "LINE_SIGNATURE_MISSING"
    assert not LineEvent.objects.exists() and not line_stub.requests


def test_a_body_altered_by_one_byte_is_refused(client, line_stub):
    body = webhook_body(text_event("hello"))
    signature = sign(body)
    altered = body.replace(b"hello", b"hellp")
    response = post(client, altered, signature)
    assert response.status_code == 403 and response.json()["code"] == "LINE_SIGNATURE_INVALID"
    assert not LineEvent.objects.exists() and not ChatMessage.objects.exists()


def test_a_body_signed_with_another_secret_is_refused(client, line_stub):
    body = webhook_body(text_event("hello"))
    assert post(client, body, sign(body, "someone-else")).status_code == 403
    assert not LineEvent.objects.exists()


def test_a_redelivered_event_is_handled_once(client, line_stub, embedded_manual):
    body = webhook_body(text_event("Replacing batteries?"))
    assert post(client, body, sign(body)).json() == {"new_events": 1}
    assert post(client, body, sign(body)).json() == {"new_events": 0}
    assert LineEvent.objects.count() == 1
    assert ChatMessage.objects.filter(is_bot=False).count() == 1 and Answer.objects.count() == 1
    assert len(line_stub.replies()) == 1


def test_the_webhook_is_off_without_the_channel_settings(client, line_stub, settings):
    settings.LINE_CHANNEL_ACCESS_TOKEN = ""
    body = webhook_body(text_event("hello"))
    response = post(client, body, sign(body))
    assert response.status_code == 404 and response.json()["code"] == "LINE_DISABLED"


def test_a_signed_body_that_is_not_a_webhook_payload_is_a_400(client, line_stub):
    body = b'{"destination": "U", "nothing": []}'
    response = post(client, body, sign(body))
    assert response.status_code == 400 and response.json()["code"] == "LINE_BODY_INVALID"


def test_a_body_over_the_limit_is_refused_before_it_is_read(client, line_stub, settings):
    settings.KIOKU_LINE_MAX_BODY_BYTES = 100
    body = webhook_body(text_event("x" * 200))
    response = post(client, body, sign(body))
    assert response.status_code == 413 and response.json()["code"] == "LINE_BODY_TOO_LARGE"
    assert not LineEvent.objects.exists()


def test_only_post_is_allowed(client, line_stub):
    assert client.get(WEBHOOK).status_code == 405


def test_an_event_kind_not_handled_yet_is_stored_and_marked_ignored(client, line_stub):
    follow = line_event(
        "follow", event_id="01JFOLLOW0000000000000001", follow={"isUnblocked": False}
    )
    body = webhook_body(follow)
    assert post(client, body, sign(body)).status_code == 200
    assert LineEvent.objects.get().status == "ignored"
    assert not line_stub.requests


def test_a_transient_reply_failure_is_retried(client, line_stub, embedded_manual):
    line_stub.fail_next(500, count=2)
    body = webhook_body(text_event("Replacing batteries?"))
    post(client, body, sign(body))
    reply = LineReply.objects.get()
    assert (reply.status, reply.attempts, reply.last_error) == ("sent", 3, "")
    assert len(line_stub.replies()) == 3


def test_a_refused_reply_keeps_the_message_and_the_answer(client, line_stub, embedded_manual):
    line_stub.fail_next(400, count=2)  # the reply token, then the push too
    body = webhook_body(text_event("Replacing batteries?"))
    assert post(client, body, sign(body)).status_code == 200
    reply = LineReply.objects.get()
    assert (reply.status, reply.attempts) == ("failed", 2)  # a refused push is not retried
    assert reply.last_error.startswith("HTTP 400")
    assert ChatMessage.objects.filter(is_bot=False).count() == 1 and Answer.objects.count() == 1
    assert json.loads(json.dumps(reply.messages))[0]["text"]


def test_an_expired_reply_token_is_replaced_by_a_push(client, line_stub, embedded_manual):
    line_stub.fail_next(400)  # LINE: "Invalid reply token" (a slow answer, over a minute)
    body = webhook_body(text_event("Replacing batteries?"))
    post(client, body, sign(body))
    reply = LineReply.objects.get()
    assert (reply.status, reply.attempts, reply.push_to) == ("sent", 2, "U1234567890abcdef")
    [pushed] = line_stub.pushes()
    assert pushed["body"]["to"] == "U1234567890abcdef"
    assert pushed["body"]["messages"] == reply.messages


def test_an_unreachable_messaging_api_is_retried_and_everything_is_kept(
    client, line_stub, embedded_manual, settings
):
    settings.LINE_API_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    body = webhook_body(text_event("Replacing batteries?"))
    assert post(client, body, sign(body)).status_code == 200
    reply = LineReply.objects.get()
    assert (reply.status, reply.attempts) == ("failed", 3)
    assert "Connection" in reply.last_error or "refused" in reply.last_error
    assert LineEvent.objects.get().status == "processed"
    assert ChatMessage.objects.filter(is_bot=False).count() == 1 and Answer.objects.count() == 1


def test_status_from_an_allowed_staff_user_reports_the_index(client, line_stub, embedded_manual):
    from line_channel.models import LineStaffUser

    LineStaffUser.objects.create(user_id="Ustaff", name="Lin")
    body = webhook_body(text_event(" Status ", user="Ustaff"))
    post(client, body, sign(body))
    text = line_stub.replies()[0]["body"]["messages"][0]["text"]
    chunks = embedded_manual.chunks.count()
    assert text.startswith("Kioku status")
    assert f"Chunks: {chunks}, embedded {chunks}, pending 0" in text
    assert "Dead letters: 0" in text and "local-hash-v1 (offline)" in text
    assert not Answer.objects.exists()  # a command, not a question
    assert ChatMessage.objects.get(is_bot=False).content == " Status "


def test_status_from_a_user_not_on_the_staff_list_is_refused(client, line_stub, embedded_manual):
    from line_channel.models import LineStaffUser

    LineStaffUser.objects.create(user_id="Uformer", name="Former", is_active=False)
    for number, user in enumerate(("Ucustomer", "Uformer")):
        body = webhook_body(text_event("status", user=user, event_id=f"01JSTATUS{number:016d}"))
        post(client, body, sign(body))
    texts = [reply["body"]["messages"][0]["text"] for reply in line_stub.replies()]
    assert texts == ["This command is for staff. Ask your question in your own words instead."] * 2
    assert not Answer.objects.exists()


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
def test_text_postgresql_cannot_store_is_refused_with_its_code(client, line_stub, bad):
    body = json.dumps(
        {"destination": "Ubot", "events": [text_event(f"E-21{bad}?")]}, ensure_ascii=True
    ).encode()
    response = post(client, body, sign(body))
    assert response.status_code == 422
    assert response.json()["code"] == "TEXT_INVALID_CHARACTER"
    assert not LineEvent.objects.exists() and not line_stub.requests


def test_a_blank_text_is_kept_and_not_answered(client, line_stub):
    body = webhook_body(text_event("   "))
    assert post(client, body, sign(body)).status_code == 200
    assert LineEvent.objects.get().status == "ignored"
    assert not ChatMessage.objects.exists() and not line_stub.requests
