from typing import Annotated

from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import WithJsonSchema

from core.auth import admin_auth, read_auth, write_auth
from core.pagination import Page, limit_param, offset_param, page_of
from core.schemas import errors
from sessions_app import queries
from sessions_app.archiver import ArchiveOutcome, session_archive
from sessions_app.models import ChatSession, SessionStatus
from sessions_app.schemas import (
    AppendIn,
    AppendOut,
    ArchiveOut,
    DeleteOut,
    SessionDetailOut,
    SessionPage,
)
from sessions_app.services import (
    KEY_PATTERN,
    AppendResult,
    MessageIn,
    session_append,
    session_delete,
    session_key_validate,
)

router = Router(tags=["sessions"])

# The key's rule (sessions_app.services.KEY_PATTERN) stated in the schema; session_key_validate
# enforces it with its own code, SESSION_INVALID_KEY.
SessionKey = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": KEY_PATTERN.pattern, "maxLength": 200})
]


@router.post(
    "/sessions/{key}/messages",
    response={200: AppendOut, 201: AppendOut},
    auth=write_auth,
    summary="Append messages (creates the session on first use); returns the recent context",
)
def message_append(
    request: HttpRequest, key: SessionKey, payload: AppendIn
) -> Status[AppendResult]:
    result = session_append(
        key=key,
        messages=[MessageIn(**item.model_dump()) for item in payload.messages],
        platform=payload.platform,
        channel=payload.channel,
        thread=payload.thread,
        title=payload.title,
        context_size=payload.context,
    )
    return Status(201 if result.created else 200, result)


@router.get("/sessions", response=SessionPage, auth=read_auth, summary="List sessions")
def session_list(
    request: HttpRequest,
    status: SessionStatus | None = None,
    platform: str | None = Query(None, max_length=50),
    channel: str | None = Query(None, max_length=200),
    q: str | None = Query(None, max_length=200),
    limit: int = limit_param(50, 200),
    offset: int = offset_param(),
) -> Page:
    sessions = queries.session_list(status=status, platform=platform, channel=channel, query=q)
    return page_of(sessions, limit=limit, offset=offset)


@router.get(
    "/sessions/{key}",
    response=SessionDetailOut,
    auth=read_auth,
    summary="Get a session with its messages (paginated, oldest first)",
)
def session_get(
    request: HttpRequest,
    key: SessionKey,
    limit: int = limit_param(100, 500),
    offset: int = offset_param(),
) -> ChatSession:
    session = queries.session_by_key(session_key_validate(key))
    messages = queries.session_messages(session)
    session.messages_page = page_of(
        messages, limit=limit, offset=offset, count=session.message_count
    )
    return session


@router.post(
    "/sessions/{key}/archive",
    response={200: ArchiveOut, **errors(409)},
    auth=write_auth,
    summary="Archive the session into knowledge now (idle or not)",
)
def session_archive_now(request: HttpRequest, key: SessionKey) -> ArchiveOutcome:
    session = queries.session_by_key(session_key_validate(key))
    return session_archive(session_id=session.pk)


@router.delete(
    "/sessions/{key}",
    response=DeleteOut,
    auth=admin_auth,
    summary="Delete a session, its messages and its archived knowledge (personal data)",
)
def session_remove(request: HttpRequest, key: SessionKey) -> dict[str, int]:
    session = queries.session_by_key(session_key_validate(key))
    counts = session_delete(session=session)
    return {"deleted_messages": counts["messages"], "deleted_sources": counts["sources"]}
