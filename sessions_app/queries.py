"""Reads shared by the API, the pages and the admin."""

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from sessions_app.errors import SESSION_NOT_FOUND, SessionError
from sessions_app.models import ChatSession, Message


def message_count_annotation():
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
