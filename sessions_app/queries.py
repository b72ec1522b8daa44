"""Reads shared by the API, the pages, the admin and the append service (the recent context)."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from sessions_app.errors import SESSION_NOT_FOUND, SessionError
from sessions_app.models import MESSAGE_TABLE, ChatSession, Message


@dataclass(frozen=True)
class ContextMessage:
    id: int
    role: str
    author: str
    is_bot: bool
    content: str
    external_id: str
    created_at: datetime


def message_count_annotation() -> Coalesce:
    """Messages of each session, counted only for the rows fetched (a correlated subquery on the
    (session, id) index) rather than grouping every message of every session."""
    counts = (
        Message.objects.filter(session=OuterRef("pk"))
        .order_by()
        .values("session")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def session_list(
    *,
    status: str | None = None,
    platform: str | None = None,
    channel: str | None = None,
    query: str | None = None,
) -> QuerySet[ChatSession]:
    sessions = ChatSession.objects.annotate(message_count=message_count_annotation()).order_by(
        "-last_active_at", "-id"
    )
    if status:
        sessions = sessions.filter(status=status)
    if platform:
        sessions = sessions.filter(platform=platform)
    if channel:
        sessions = sessions.filter(channel=channel)
    if query:
        sessions = sessions.filter(
            Q(key__icontains=query) | Q(title__icontains=query) | Q(participants__contains=[query])
        )
    return sessions


def session_by_key(key: str) -> ChatSession:
    session = (
        ChatSession.objects.annotate(message_count=message_count_annotation())
        .select_related("source", "duplicate_of")
        .filter(key=key)
        .first()
    )
    if session is None:
        raise SessionError(
            SESSION_NOT_FOUND, f"No session with key {key!r}.", status=404, details={"key": key}
        )
    return session


def session_messages(session: ChatSession) -> QuerySet[Message]:
    return session.messages.order_by("id")


def session_platforms() -> list[str]:
    return list(
        ChatSession.objects.exclude(platform="")
        .order_by("platform")
        .values_list("platform", flat=True)
        .distinct()
    )


# The last messages of a session, newest first; `session` is an id or a subquery giving one (the
# append sends it in the same round trip as the insert, before the id is known).
RECENT_MESSAGES_SQL = f"""
    SELECT id, role, author, is_bot, content, external_id, created_at FROM {MESSAGE_TABLE}
    WHERE session_id = {{session}} ORDER BY id DESC LIMIT %s
"""


def context_messages(rows: list[tuple]) -> list[ContextMessage]:
    """RECENT_MESSAGES_SQL's rows, oldest first."""
    return [ContextMessage(*row) for row in reversed(rows)]


def session_recent_messages(*, session_id: int, limit: int) -> list[ContextMessage]:
    """The session's last `limit` messages, oldest first: the context a bot gets back."""
    if limit <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(RECENT_MESSAGES_SQL.format(session="%s"), [session_id, limit])
        return context_messages(cursor.fetchall())


def session_context(*, session: ChatSession, limit: int | None = None) -> list[ContextMessage]:
    """The last KIOKU_SESSION_CONTEXT_MESSAGES (or `limit`) messages of `session`."""
    limit = settings.KIOKU_SESSION_CONTEXT_MESSAGES if limit is None else limit
    return session_recent_messages(session_id=session.pk, limit=limit)
