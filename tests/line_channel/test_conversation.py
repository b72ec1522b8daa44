"""Questions on LINE outside a report: the answer's quick replies (helpful / not helpful, report
a fault), the per-user rate limit, events the SDK cannot read, and pushes with a retry key."""

import pytest

from knowledge.models import Answer
from line_channel.messaging import line_message_send, text_message
from line_channel.models import LineEvent, LineReply
from sessions_app.models import Message as ChatMessage
from tests.line_channel.conftest import (
    Chat,
    buttons,
    line_event,
    postback_data,
    sign,
    webhook_body,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_answer_offers_feedback_and_a_report_and_the_feedback_is_kept(
    client, line_stub, embedded_manual
):
    chat = Chat(client, line_stub)
    [answer] = chat.say("What does E-21 mean on the KG-200?")
    assert buttons(answer) == ["Helpful", "Not helpful", "Report a fault"]
    report = answer["quickReply"]["items"][2]["action"]
    assert (report["type"], report["text"]) == ("message", "repair")

    [thanks] = chat.tap(postback_data(answer, "Not helpful"))
    assert thanks["text"] == "Thank you for the feedback."
    stored = Answer.objects.get()
    assert (stored.feedback, stored.feedback_by) == ("not_helpful", "line:U1234567890abcdef")
    chat.tap(postback_data(answer, "Helpful"))  # changed their mind: the latest wins
    stored.refresh_from_db()
    assert stored.feedback == "helpful"


def test_a_refusal_offers_a_report_but_no_feedback(client, line_stub, embedded_manual):
    [refusal] = Chat(client, line_stub).say("What is the capital of Mongolia?")
    assert Answer.objects.get().outcome != "answered"
    assert buttons(refusal) == ["Report a fault"]


def test_only_the_user_who_got_an_answer_can_rate_it(client, line_stub, embedded_manual):
    [answer] = Chat(client, line_stub).say("What does E-21 mean on the KG-200?")
    stranger = Chat(client, line_stub, user="Ustranger0000000000000000000000001")
    assert stranger.tap(postback_data(answer, "Not helpful")) == []
    assert Answer.objects.get().feedback == ""
    assert stranger.tap("action=feedback&answer=not-a-number&helpful=1") == []
    assert stranger.tap("something=else") == []
    huge = 2**70  # beyond bigint: no such answer or card, not an error
    assert stranger.tap(f"action=feedback&answer={huge}&helpful=1") == []
    assert stranger.tap(f"action=solved&card={huge}&solved=1") == []
    assert set(LineEvent.objects.filter(kind="postback").values_list("status", flat=True)) == {
        "processed",
        "ignored",
    }


def test_a_user_over_the_rate_limit_is_told_once_and_nothing_is_lost(
    client, line_stub, embedded_manual, settings
):
    settings.KIOKU_LINE_USER_EVENTS_PER_MINUTE = 2
    chat = Chat(client, line_stub)
    replies = [chat.say(f"Question number {n} about batteries?") for n in range(4)]
    assert [len(r) for r in replies] == [1, 1, 1, 0]
    assert replies[2][0]["text"] == (
        "You are sending messages too fast. Please wait a minute and try again."
    )
    statuses = list(LineEvent.objects.order_by("id").values_list("status", flat=True))
    assert statuses == ["processed", "processed", "limited", "limited"]
    assert Answer.objects.count() == 2
    # Every message the user sent is kept in their session.
    assert ChatMessage.objects.filter(is_bot=False).count() == 4
    # Another user is not limited by this one.
    assert Chat(client, line_stub, user="Uother00000000000000000000000000001").say("Batteries?")


def test_an_event_the_sdk_cannot_read_is_kept_and_not_answered(client, line_stub):
    # An image without its quoteToken: not valid for the SDK.
    event = line_event(
        "message", event_id="01JODD0000000000000000001", message={"id": "1", "type": "image"}
    )
    body = webhook_body(event)
    response = client.post(
        "/integrations/line/webhook",
        data=body,
        content_type="application/json",
        HTTP_X_LINE_SIGNATURE=sign(body),
    )
    assert response.status_code == 200
    row = LineEvent.objects.get()
    assert row.status == "ignored" and "cannot read" in row.error
    assert row.payload == event and not line_stub.requests


def test_a_push_retried_after_a_lost_answer_is_delivered_once(client, line_stub, settings):
    chat = Chat(client, line_stub)
    chat.tap("nothing=here")  # any stored event to hang the push on
    push = LineReply.objects.create(
        event=LineEvent.objects.get(), push_to="Ustaff", messages=[text_message("Sync done.")]
    )
    line_stub.fail_next(503)
    line_message_send(reply_id=push.pk)
    push.refresh_from_db()
    assert (push.status, push.attempts) == ("sent", 2)
    attempts = [r for r in line_stub.requests if r["path"] == "/v2/bot/message/push"]
    assert {r["retry_key"] for r in attempts} == {str(push.retry_key)}
    assert len(line_stub.pushes()) == 1

    # LINE took it but the answer was lost: the next try gets 409, which means delivered.
    push.status = "failed"
    push.save()
    line_message_send(reply_id=push.pk)
    push.refresh_from_db()
    assert (push.status, push.last_error) == ("sent", "")
    assert len(line_stub.pushes()) == 1
