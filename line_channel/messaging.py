"""Talking to LINE's Messaging API through line-bot-sdk v3: a stored message sent as a reply (with
the event's reply token) or as a push (to a user id), retried and logged; the sender's display
name; the bytes of an image a user sent.

Messages are stored as LINE's own JSON (`{"type": "text", "text": …, "quickReply": …}`) and turned
into the SDK's models only when they are sent, so the admin shows exactly what LINE received."""

import logging
import time

import urllib3
from django.conf import settings
from django.utils import timezone
from linebot.v3.messaging import (
    ApiClient,
    Configuration,
    Message,
    MessagingApi,
    MessagingApiBlob,
    PushMessageRequest,
    ReplyMessageRequest,
)
from linebot.v3.messaging.exceptions import ApiException

from line_channel.models import LineReply, ReplyStatus

logger = logging.getLogger(__name__)
TEXT_LIMIT = 5000  # LINE's longest text message
QUICK_REPLY_LABEL_LIMIT = 20  # LINE's longest quick-reply label
QUICK_REPLY_ITEMS_LIMIT = 13  # LINE's most quick-reply buttons under one message


class LineApiError(Exception):
    """The Messaging API could not be reached or refused a call (the message says which)."""


def _client(host: str) -> ApiClient:
    return ApiClient(Configuration(host=host, access_token=settings.LINE_CHANNEL_ACCESS_TOKEN))


def fit_text(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def quick_reply_postback(label: str, data: str, *, display_text: str = "") -> dict:
    """A quick-reply button that sends Kioku `data` (a postback event) and shows `display_text`
    in the chat as the user's message."""
    action = {"type": "postback", "label": label[:QUICK_REPLY_LABEL_LIMIT], "data": data}
    if display_text:
        action["displayText"] = display_text
    return {"type": "action", "action": action}


def quick_reply_text(label: str, text: str) -> dict:
    """A quick-reply button that sends `text` as if the user had typed it."""
    return {
        "type": "action",
        "action": {"type": "message", "label": label[:QUICK_REPLY_LABEL_LIMIT], "text": text},
    }


def quick_reply_camera(label: str) -> dict:
    return {"type": "action", "action": {"type": "camera", "label": label}}


def quick_reply_camera_roll(label: str) -> dict:
    return {"type": "action", "action": {"type": "cameraRoll", "label": label}}


def text_message(text: str, *, quick_replies: list[dict] | None = None) -> dict:
    message: dict = {"type": "text", "text": fit_text(text)}
    if quick_replies:
        message["quickReply"] = {"items": quick_replies[:QUICK_REPLY_ITEMS_LIMIT]}
    return message


def line_message_send(*, reply_id: int) -> LineReply:
    """Send a stored message: as a reply when it has a reply token, else as a push to
    `push_to`. Transient failures (network, 429, 5xx) are retried up to
    KIOKU_LINE_REPLY_ATTEMPTS; every failure is kept on the row; a reply whose token LINE refuses
    (400: used or expired) goes on as a push to the user; another refusal (4xx) is not retried.
    A push carries the row's retry key, so LINE
    delivers it once even when an attempt timed out after LINE took it (409: already accepted)."""
    reply = LineReply.objects.select_related("event").get(pk=reply_id)
    if reply.status == ReplyStatus.SENT:
        return reply
    if not settings.LINE_CHANNEL_ACCESS_TOKEN:  # e.g. the demo's conversation: kept, not sent
        reply.last_error = "Not sent: LINE_CHANNEL_ACCESS_TOKEN is not set."
        reply.save(update_fields=["last_error"])
        return reply
    messages = [Message.from_dict(message) for message in reply.messages]
    for attempt in range(1, settings.KIOKU_LINE_REPLY_ATTEMPTS + 1):
        reply.attempts += 1
        try:
            with _client(settings.LINE_API_BASE_URL) as client:
                api = MessagingApi(client)
                if reply.reply_token:
                    api.reply_message(
                        ReplyMessageRequest(reply_token=reply.reply_token, messages=messages)
                    )
                else:
                    api.push_message(
                        PushMessageRequest(to=reply.push_to, messages=messages),
                        x_line_retry_key=str(reply.retry_key),
                    )
        except ApiException as exc:
            if exc.status == 409 and not reply.reply_token:
                reply.last_error = ""  # LINE took this retry key before: the push was sent
                break
            reply.last_error = f"HTTP {exc.status}: {str(exc.body or exc.reason)[:500]}"
            transient = exc.status == 429 or (exc.status or 0) >= 500
            if exc.status == 400 and reply.reply_token and reply.event.user_id:
                # The reply token is used or expired (about a minute: a slow answer): the user
                # still gets the message, as a push.
                reply.reply_token = ""
                reply.push_to = reply.event.user_id
                reply.save(update_fields=["reply_token", "push_to"])
                transient = True
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, reset, timed out
            reply.last_error = f"{type(exc).__name__}: {exc}"[:500]
            transient = True
        except Exception as exc:  # e.g. an answer it cannot read: it may have been sent, no retry
            reply.last_error = f"{type(exc).__name__}: {exc}"[:500]
            transient = False
        else:
            reply.last_error = ""
            break
        reply.status = ReplyStatus.FAILED
        reply.save(update_fields=["status", "attempts", "last_error"])
        logger.warning("LINE message %s, attempt %s: %s", reply.pk, attempt, reply.last_error)
        if not transient or attempt == settings.KIOKU_LINE_REPLY_ATTEMPTS:
            return reply
        time.sleep(settings.KIOKU_LINE_REPLY_BACKOFF_SECONDS * attempt)
    reply.status = ReplyStatus.SENT
    reply.sent_at = timezone.now()
    reply.save(update_fields=["status", "sent_at", "attempts", "last_error"])
    return reply


def line_profile_name(*, user_id: str) -> str:
    """The user's LINE display name, or "" when LINE cannot tell (blocked, network, the channel
    off)."""
    if not settings.LINE_CHANNEL_ACCESS_TOKEN:
        return ""
    try:
        with _client(settings.LINE_API_BASE_URL) as client:
            return MessagingApi(client).get_profile(user_id).display_name or ""
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        logger.warning("LINE profile of %s: %s", user_id, exc)
        return ""


def line_message_content(*, message_id: str) -> bytes:
    """The bytes of an image (or other content) a user sent, from LINE's data host
    (`LINE_API_DATA_BASE_URL`). LINE keeps them for a limited time only."""
    try:
        with _client(settings.LINE_API_DATA_BASE_URL) as client:
            return bytes(MessagingApiBlob(client).get_message_content(message_id))
    except ApiException as exc:
        raise LineApiError(f"LINE answered HTTP {exc.status} for content {message_id}.") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise LineApiError(f"LINE could not be reached for content {message_id}: {exc}") from exc
