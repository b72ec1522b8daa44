"""The LINE channel: a signed webhook whose events are stored once (by LINE's
`webhookEventId`) and then handled by the worker; a text message is appended to the user's
session (`line:<user id>`, the message id as `external_id`) and answered by the existing ask,
with the titles of the sources it cites; the reply is stored before it is sent and retried.

Staff users (an allow-list in the admin) may send `status` (UC-STATUS-001).

Not built yet (issue 18): the guided intake that files a problem card, images as card photos,
quick-reply feedback, the staff `sync` command and its push message.
"""

import json
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import Event, MessageEvent, TextMessageContent

from core.errors import ApiError
from knowledge.answer.answering import answer_ask
from knowledge.models import Answer, AnswerOutcome
from knowledge.queries import index_status
from line_channel.errors import (
    LINE_BODY_INVALID,
    LINE_DISABLED,
    LINE_SIGNATURE_INVALID,
    LINE_SIGNATURE_MISSING,
)
from line_channel.messaging import fit_text, line_message_send, text_message
from line_channel.models import EventStatus, LineEvent, LineReply, LineStaffUser
from line_channel.sync import line_sync_start
from sessions_app.services import MessageIn, session_append

logger = logging.getLogger(__name__)
SOURCES_LABEL = {"ja": "出典", "zh": "來源", "en": "Sources"}


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


def line_event_process(*, event_pk: int) -> LineEvent:
    """Handle one stored event (safe to run twice: a processed event is left as it is)."""
    row = LineEvent.objects.get(pk=event_pk)
    if row.status != EventStatus.RECEIVED:
        return row
    parsed = Event.from_dict(row.payload)  # the signature was checked when it was stored
    if isinstance(parsed, MessageEvent) and isinstance(parsed.message, TextMessageContent):
        if parsed.message.text.strip().lower() in STAFF_COMMANDS:
            reply = _staff_command_answer(row, parsed)
        else:
            reply = _text_message_answer(row, parsed)
        row.status = EventStatus.PROCESSED
        row.processed_at = timezone.now()
        row.save(update_fields=["status", "processed_at"])
        line_message_send(reply_id=reply.pk)
        return row
    row.status = EventStatus.IGNORED
    row.processed_at = timezone.now()
    row.save(update_fields=["status", "processed_at"])
    return row


def _session_append_message(row: LineEvent, event: MessageEvent) -> None:
    """Every text message, question or command, joins the user's session `line:<user id>`
    (the message id as external_id: LINE's retry is not stored twice)."""
    session_append(
        key=f"line:{row.user_id}",
        messages=[
            MessageIn(content=event.message.text, author=row.user_id, external_id=event.message.id)
        ],
    )


@transaction.atomic
def _text_message_answer(row: LineEvent, event: MessageEvent) -> LineReply:
    """The message joins the user's session, the ask answers it, and the reply is stored, all
    in one transaction: a reply that cannot be sent later loses neither."""
    text = event.message.text
    _session_append_message(row, event)
    try:
        answer = answer_ask(question=text, channel="line")
    except ApiError as exc:  # an empty or overlong question: say so instead of answering
        return LineReply.objects.create(
            event=row,
            reply_token=event.reply_token or "",
            messages=[text_message(exc.message)],
        )
    return LineReply.objects.create(
        event=row,
        reply_token=event.reply_token or "",
        messages=[text_message(answer_reply_text(answer))],
        answer=answer,
    )


STAFF_COMMANDS = ("status", "sync")


def is_line_staff(user_id: str) -> bool:
    return LineStaffUser.objects.filter(user_id=user_id, is_active=True).exists()


@transaction.atomic
def _staff_command_answer(row: LineEvent, event: MessageEvent) -> LineReply:
    """UC-STATUS-001 for an allowed staff user: the knowledge base's state in one message. Anyone
    else is told the command is for staff (nothing about the index is shown)."""
    _session_append_message(row, event)
    if is_line_staff(row.user_id):
        if event.message.text.strip().lower() == "sync":
            text = line_sync_start(event=row)  # UC-SYNC-001: its result comes as a push
        else:
            text = status_text(index_status())
    else:
        text = "This command is for staff. Ask your question in your own words instead."
    return LineReply.objects.create(
        event=row, reply_token=event.reply_token or "", messages=[text_message(text)]
    )


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


def answer_reply_text(answer: Answer) -> str:
    """The answer and, when it cites passages, the titles of their sources (LINE shows no links
    to our pages), within LINE's length limit."""
    text = answer.answer
    if answer.outcome == AnswerOutcome.ANSWERED:
        titles = list(
            dict.fromkeys(answer.sources.filter(cited=True).values_list("source_title", flat=True))
        )
        if titles:
            label = SOURCES_LABEL.get(answer.language, SOURCES_LABEL["en"])
            text += f"\n\n{label}: " + " / ".join(titles)
    return fit_text(text)
