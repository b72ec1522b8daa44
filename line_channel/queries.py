"""Reads of the LINE channel for other pages: the conversation beside a problem card."""

from dataclasses import dataclass

from line_channel.models import LineIntake, line_session_key
from sessions_app.models import Message

CONVERSATION_SHOWN = 50  # the latest messages; the session page has them all


@dataclass
class Conversation:
    session_id: int | None
    messages: list[Message]
    intake: LineIntake | None  # the report that filed the card, with the customer's word


def line_conversation(*, user_id: str, card_id: int) -> Conversation:
    """The LINE user's session `line:<user id>` (both sides, oldest first, the latest
    CONVERSATION_SHOWN) and the report that filed the card."""
    latest = list(
        Message.objects.filter(session__key=line_session_key(user_id))
        .select_related("session")
        .order_by("-id")[:CONVERSATION_SHOWN]
    )
    latest.reverse()
    return Conversation(
        session_id=latest[0].session_id if latest else None,
        messages=latest,
        intake=LineIntake.objects.filter(card_id=card_id).order_by("-started_at").first(),
    )
