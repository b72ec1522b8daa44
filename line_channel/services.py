"""The LINE channel: a signed webhook whose events are stored once (by LINE's
`webhookEventId`) and then handled by the worker; a text message is appended to the user's
session (`line:<user id>`, the message id as `external_id`) and answered by the existing ask,
with the titles of the sources it cites; the reply is stored before it is sent and retried.

A start word ("repair", "報修", "修理", or the quick reply under every answer) begins the guided
fault report (line_channel/intake.py); its answers, and the photos sent meanwhile, go to the
report. A photo outside a report goes to the user's latest open card. Quick replies under an
answer say helpful / not helpful (answer feedback), under a diagnosis solved / still broken.
Everything the user sent and everything Kioku replied is in the session, which staff read beside
the card. Staff users (an allow-list in the admin) may send `status` (UC-STATUS-001) and `sync`
(UC-SYNC-001).

A user sending more than KIOKU_LINE_USER_EVENTS_PER_MINUTE events a minute is told to slow down
once; the rest are kept (`limited`) and not answered.
"""

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    Event,
    ImageMessageContent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
)

from core.edge import json_check
from core.errors import ApiError
from knowledge.answer.answering import answer_ask, answer_feedback
from knowledge.models import Answer, AnswerOutcome
from knowledge.queries import index_status
from knowledge.text import detect_language
from line_channel.errors import (
    LINE_BODY_INVALID,
    LINE_DISABLED,
    LINE_SIGNATURE_INVALID,
    LINE_SIGNATURE_MISSING,
)
from line_channel.intake import (
    answer_buttons,
    intake_current,
    intake_escalate,
    intake_finish,
    intake_outcome,
    intake_photo,
    intake_start,
    intake_text,
    line_photo_attach,
    report_button,
    start_language,
)
from line_channel.messaging import line_message_send, text_message
from line_channel.models import (
    EventStatus,
    LineEvent,
    LineIntake,
    LineReply,
    LineStaffUser,
    line_session_key,
)
from line_channel.sync import line_sync_start
from line_channel.texts import answer_reply_text, fold, say
from sessions_app.models import Message as ChatMessage
from sessions_app.models import MessageRole
from sessions_app.services import MessageIn, session_append

logger = logging.getLogger(__name__)
BOT_AUTHOR = "Kioku"


class LineError(ApiError):
    """A webhook request LINE (or someone pretending to be LINE) must change."""


def line_enabled() -> bool:
    return bool(settings.LINE_CHANNEL_SECRET and settings.LINE_CHANNEL_ACCESS_TOKEN)


def line_webhook_receive(*, body: bytes, signature: str | None) -> list[LineEvent]:
    """Check the signature (HMAC-SHA256 of the raw body with the channel secret, compared in
    constant time by line-bot-sdk) before reading anything, then store each event not seen
    before and queue it for the worker. Returns the new events; a redelivered one is skipped."""
    if not line_enabled():
        raise LineError(LINE_DISABLED, "The LINE channel is not configured.", status=404)
    if not signature:
        raise LineError(
            LINE_SIGNATURE_MISSING, "The X-Line-Signature header is missing.", status=401
        )
    parser = WebhookParser(settings.LINE_CHANNEL_SECRET)
    try:
        text = body.decode("utf-8")
        events = parser.parse(text, signature)
        raw_events = json.loads(text)["events"]
    except InvalidSignatureError as exc:
        raise LineError(
            LINE_SIGNATURE_INVALID, "The X-Line-Signature does not match the body.", status=403
        ) from exc
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise LineError(LINE_BODY_INVALID, "The body is not a LINE webhook payload.") from exc
    json_check(raw_events, location=["body", "events"])  # NUL, lone surrogates: 422, not stored
    stored = []
    for event, raw in zip(events, raw_events, strict=True):
        event_id = getattr(event, "webhook_event_id", None)
        if not event_id:
            raise LineError(LINE_BODY_INVALID, "An event has no webhookEventId.")
        message = getattr(event, "message", None)
        try:
            with transaction.atomic():
                row = LineEvent.objects.create(
                    webhook_event_id=event_id,
                    kind=str(getattr(event, "type", "") or "")[:32],
                    message_kind=str(getattr(message, "type", "") or "")[:32],
                    user_id=str(getattr(getattr(event, "source", None), "user_id", "") or "")[:64],
                    payload=raw,
                )
        except IntegrityError:
            continue  # LINE redelivered an event already stored: handled once
        stored.append(row)
    for row in stored:
        transaction.on_commit(lambda pk=row.pk: _queue(pk))
    return stored


def _queue(event_pk: int) -> None:
    from django_q.tasks import async_task

    async_task("line_channel.tasks.line_event_process", event_pk)


@dataclass
class Handled:
    """What handling an event came to: the messages to reply with (and the answer they carry),
    or an intake to finish once the event's transaction is committed."""

    status: str = EventStatus.PROCESSED
    messages: list[dict] = field(default_factory=list)
    answer: Answer | None = None
    finish_intake_id: int | None = None


def line_event_process(*, event_pk: int) -> LineEvent:
    """Handle one stored event, once (safe to run twice, even at the same time: the event row is
    locked and a handled event is left as it is). A user over the rate limit is told so once
    per minute; their events are kept, marked `limited`, and not answered."""
    with transaction.atomic():
        row = LineEvent.objects.select_for_update().get(pk=event_pk)
        if row.status != EventStatus.RECEIVED:
            return row
        try:
            event = Event.from_dict(row.payload)  # the signature was checked when it was stored
        except ValueError as exc:  # a kind (or a shape) this line-bot-sdk cannot read: kept
            row.status = EventStatus.IGNORED
            row.error = f"line-bot-sdk cannot read this event: {exc}"[:2000]
            row.processed_at = timezone.now()
            row.save(update_fields=["status", "error", "processed_at"])
            return row
        handled = _rate_limited(row, event) if _over_rate(row) else _route(row, event)
        reply = _reply_store(row, event, handled.messages, answer=handled.answer)
        row.status = handled.status
        row.processed_at = timezone.now()
        row.save(update_fields=["status", "processed_at"])
    if handled.finish_intake_id is not None:
        reply = _reply_store(row, event, _intake_finish_or_escalate(row, handled.finish_intake_id))
    if reply is not None:
        line_message_send(reply_id=reply.pk)
    return row


def _route(row: LineEvent, event: Event) -> Handled:
    if isinstance(event, MessageEvent) and isinstance(event.message, TextMessageContent):
        return _text_handle(row, event)
    if isinstance(event, MessageEvent) and isinstance(event.message, ImageMessageContent):
        return _image_handle(row, event)
    if isinstance(event, PostbackEvent):
        return _postback_handle(row, event)
    return Handled(status=EventStatus.IGNORED)


def _text_handle(row: LineEvent, event: MessageEvent) -> Handled:
    """A command, the start of a report, an answer in a report, or else a question."""
    text = event.message.text
    if not text.strip():  # nothing to keep or answer (LINE does not send empty texts)
        return Handled(status=EventStatus.IGNORED)
    _session_append_user(row, text, external_id=event.message.id)
    command = fold(text)
    if command in STAFF_COMMANDS:
        return Handled(messages=_staff_command(row, command))
    language = start_language(text)
    if language is not None:
        return Handled(messages=intake_start(user_id=row.user_id, language=language).messages)
    intake = intake_current(user_id=row.user_id, lock=True)
    if intake is not None:
        step = intake_text(intake=intake, text=text)
        return Handled(messages=step.messages, finish_intake_id=intake.pk if step.finish else None)
    return _question_answer(text)


def _image_handle(row: LineEvent, event: MessageEvent) -> Handled:
    """A photo: for the report in progress, else for the user's latest open card."""
    message_id = event.message.id
    intake = intake_current(user_id=row.user_id, lock=True)
    if intake is not None:
        step = intake_photo(intake=intake, message_id=message_id)
        messages = step.messages
        card_id = intake.card_id
    else:
        language = _user_language(row.user_id)
        messages = line_photo_attach(user_id=row.user_id, message_id=message_id, language=language)
        card_id = None
    note = f"[photo {message_id}" + (f", card #{card_id}]" if card_id else "]")
    _session_append_user(row, note, external_id=message_id)
    return Handled(messages=messages)


def _postback_handle(row: LineEvent, event: PostbackEvent) -> Handled:
    """The quick replies under an answer (helpful / not helpful) and under a diagnosis (solved /
    still broken). Only the user the message went to can use them."""
    data = {key: values[0] for key, values in parse_qs(event.postback.data or "").items()}
    action = data.get("action")
    try:
        if action == "feedback":
            return Handled(
                messages=_answer_feedback(row, int(data["answer"]), data["helpful"] == "1")
            )
        if action == "solved":
            solved = data["solved"] == "1"
            card_id = int(data["card"])
            messages = intake_outcome(user_id=row.user_id, card_id=card_id, solved=solved)
            if messages:
                _session_append_user(
                    row,
                    f"[{'solved' if solved else 'still broken'}, card #{card_id}]",
                    external_id=f"postback:{row.webhook_event_id}",
                )
            return Handled(messages=messages)
    except (KeyError, ValueError):
        pass
    return Handled(status=EventStatus.IGNORED)  # not a postback Kioku sent


def _answer_feedback(row: LineEvent, answer_id: int, helpful: bool) -> list[dict]:
    replied = LineReply.objects.filter(answer_id=answer_id, event__user_id=row.user_id)
    answer = Answer.objects.filter(pk=answer_id, pk__in=replied.values("answer_id")).first()
    if answer is None:
        return []
    answer_feedback(answer=answer, is_helpful=helpful, by=f"line:{row.user_id}")
    return [text_message(say("thanks_feedback", answer.language))]


def _question_answer(text: str) -> Handled:
    """UC-QA-001: the existing ask answers, with its sources' titles and, under the answer,
    helpful / not helpful and a button that starts a report."""
    try:
        answer = answer_ask(question=text, channel="line")
    except ApiError as exc:  # an empty or overlong question: say so instead of answering
        return Handled(messages=[text_message(exc.message)])
    language = answer.language
    buttons = [report_button(language)]
    if answer.outcome == AnswerOutcome.ANSWERED:
        buttons = [
            *answer_buttons(
                language,
                yes="button_helpful",
                no="button_not_helpful",
                data=f"action=feedback&answer={answer.pk}&helpful",
            ),
            *buttons,
        ]
    return Handled(
        messages=[text_message(answer_reply_text(answer), quick_replies=buttons)], answer=answer
    )


def _intake_finish_or_escalate(row: LineEvent, intake_id: int) -> list[dict]:
    """The diagnosis of a finished report; if it fails, the card stays open on the board and the
    customer is told a technician will call (a person takes over, nothing is lost)."""
    try:
        return intake_finish(intake_id=intake_id)
    except Exception as exc:
        logger.exception("LINE intake %s: the diagnosis failed", intake_id)
        LineEvent.objects.filter(pk=row.pk).update(error=f"diagnosis failed: {exc}"[:2000])
        return intake_escalate(intake_id=intake_id)


def _over_rate(row: LineEvent) -> bool:
    if not row.user_id:
        return False
    recent = LineEvent.objects.filter(
        user_id=row.user_id,
        received_at__gt=timezone.now() - timedelta(minutes=1),
        pk__lte=row.pk,
    )
    return recent.count() > settings.KIOKU_LINE_USER_EVENTS_PER_MINUTE


def _rate_limited(row: LineEvent, event: Event) -> Handled:
    """Kept (and a text joins the session), not answered; the user is told once a minute."""
    message = getattr(event, "message", None)
    if isinstance(message, TextMessageContent):
        _session_append_user(row, message.text, external_id=message.id)
    already_told = LineEvent.objects.filter(
        user_id=row.user_id,
        status=EventStatus.LIMITED,
        received_at__gt=timezone.now() - timedelta(minutes=1),
    ).exists()
    messages = [] if already_told else [text_message(say("too_fast", _user_language(row.user_id)))]
    return Handled(status=EventStatus.LIMITED, messages=messages)


def _session_append_user(row: LineEvent, text: str, *, external_id: str) -> None:
    """What the user sent joins their session `line:<user id>` (the message id as external_id:
    LINE's redelivery is not stored twice)."""
    session_append(
        key=line_session_key(row.user_id),
        messages=[MessageIn(content=text, author=row.user_id, external_id=external_id)],
    )


def _reply_store(
    row: LineEvent, event: Event, messages: list[dict], *, answer: Answer | None = None
) -> LineReply | None:
    """Store the reply (sent after the commit, retried, never lost) and add what it says to the
    user's session, so staff read the whole conversation beside the card."""
    if not messages:
        return None
    with transaction.atomic():
        reply = LineReply.objects.create(
            event=row,
            reply_token=getattr(event, "reply_token", None) or "",
            messages=messages,
            answer=answer,
        )
        if row.user_id:
            session_append(
                key=line_session_key(row.user_id),
                messages=[
                    MessageIn(
                        content=message["text"],
                        role=MessageRole.ASSISTANT,
                        author=BOT_AUTHOR,
                        is_bot=True,
                        external_id=f"line-reply:{reply.pk}:{number}",
                    )
                    for number, message in enumerate(messages)
                    if message.get("type") == "text"
                ],
            )
    return reply


def _user_language(user_id: str) -> str:
    """The language to speak to a user outside a report: their last report's, else that of the
    last text they sent."""
    intake = LineIntake.objects.filter(user_id=user_id).order_by("-started_at").first()
    if intake is not None:
        return intake.language
    last = (
        ChatMessage.objects.filter(session__key=line_session_key(user_id), is_bot=False)
        .order_by("-id")
        .values_list("content", flat=True)
        .first()
    )
    return detect_language(last) if last else "en"


STAFF_COMMANDS = ("status", "sync")


def is_line_staff(user_id: str) -> bool:
    return LineStaffUser.objects.filter(user_id=user_id, is_active=True).exists()


def _staff_command(row: LineEvent, command: str) -> list[dict]:
    """For an allowed staff user: `status` (UC-STATUS-001), the knowledge base's state in one
    message; `sync` (UC-SYNC-001), web sources fetched again (line_channel/sync.py). Anyone else
    is told the command is for staff (nothing about the index is shown, nothing starts)."""
    if not is_line_staff(row.user_id):
        return [text_message(say("staff_only", _user_language(row.user_id)))]
    if command == "sync":
        return [text_message(line_sync_start(event=row))]  # UC-SYNC-001: its result is a push
    return [text_message(status_text(index_status()))]


def status_text(status: dict) -> str:
    """The index status (knowledge.queries.index_status) as a LINE message."""
    sources = status["sources"]
    lines = [
        "Kioku status",
        f"Sources: {sources['total']} ({sources['by_status'].get('failed', 0)} failed)",
        f"Chunks: {status['chunks']['total']}, embedded {status['embedded']}, "
        f"pending {status['pending']}",
        f"Dead letters: {status['dead_letters']}",
        f"Model: {status['model']}" + (" (offline)" if status["offline"] else ""),
        f"Pipeline: {status['pipeline']['state']}",
    ]
    if status.get("warning"):
        lines.append(f"Warning: {status['warning']}")
    return "\n".join(lines)
