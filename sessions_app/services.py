"""Writes to short-term memory: appending messages (the bot's hot path) and deleting a session.

Appending costs no API call and three statements in one transaction: the session row is
upserted first (created on first use, otherwise locked with its version bumped), then all
messages go in with one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`, then the recent
context is read back. Taking the session row lock *before* message ids are drawn from the
sequence is what lets the archiver use "highest archived id" as a watermark: an append still in
flight holds the row, so the archiver's optimistic write waits for it and then fails instead of
jumping past a message id that commits later.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from core.statements import Statement, fetch_statements
from knowledge.models import KnowledgeSource
from knowledge.services import source_delete
from sessions_app.errors import (
    SESSION_EMPTY_MESSAGE,
    SESSION_INVALID_KEY,
    SESSION_INVALID_ROLE,
    SESSION_MESSAGE_TOO_LONG,
    SESSION_NO_MESSAGES,
    SESSION_TOO_MANY_MESSAGES,
    SessionError,
)
from sessions_app.models import MESSAGE_TABLE, SESSION_TABLE, ChatSession, MessageRole
from sessions_app.queries import RECENT_MESSAGES_SQL, ContextMessage, context_messages

# Keys travel in URL paths: letters, digits and . _ : @ # + = - only.
KEY_PATTERN = re.compile(r"^[\w.:@#+=-]{1,200}$")


@dataclass(frozen=True)
class MessageIn:
    content: str
    role: str = MessageRole.USER
    author: str = ""
    is_bot: bool = False
    external_id: str | None = None
    created_at: datetime | None = None


@dataclass
class AppendResult:
    session_id: int
    key: str
    created: bool
    accepted: int
    version: int
    duplicate_external_ids: list[str] = field(default_factory=list)
    context: list[ContextMessage] = field(default_factory=list)


def session_key_for(*, platform: str = "", channel: str = "", thread: str = "") -> str:
    """The key of a session identified by where it happens: "platform:channel[:thread]"."""
    parts = [part.strip() for part in (platform, channel, thread)]
    if not parts[0] or not parts[1]:
        raise SessionError(
            SESSION_INVALID_KEY, "Give a session key, or a platform and a channel.", status=422
        )
    key = ":".join(part for part in parts if part)
    return session_key_validate(key)


def session_key_validate(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise SessionError(
            SESSION_INVALID_KEY,
            "A session key is 1–200 characters: letters, digits and . _ : @ # + = - only.",
            status=422,
            details={"key": key if isinstance(key, str) else None},
        )
    return key


def _validate_messages(messages: list[MessageIn]) -> None:
    limit = settings.KIOKU_SESSION_MAX_APPEND
    if not messages:
        raise SessionError(SESSION_NO_MESSAGES, "Send at least one message.", status=422)
    if len(messages) > limit:
        raise SessionError(
            SESSION_TOO_MANY_MESSAGES,
            f"{len(messages)} messages in one request; the limit is {limit} "
            "(KIOKU_SESSION_MAX_APPEND). Split the batch.",
            status=413,
            details={"count": len(messages), "limit": limit},
        )
    max_chars = settings.KIOKU_SESSION_MAX_MESSAGE_CHARS
    for index, message in enumerate(messages):
        if message.role not in MessageRole.values:
            raise SessionError(
                SESSION_INVALID_ROLE,
                f"Message {index}: unknown role {message.role!r}; use user, assistant or system.",
                status=422,
                details={"index": index},
            )
        if not message.content or not message.content.strip():
            raise SessionError(
                SESSION_EMPTY_MESSAGE,
                f"Message {index} has no text.",
                status=422,
                details={"index": index},
            )
        if len(message.content) > max_chars:
            raise SessionError(
                SESSION_MESSAGE_TOO_LONG,
                f"Message {index} has {len(message.content):,} characters; the limit is "
                f"{max_chars:,} (KIOKU_SESSION_MAX_MESSAGE_CHARS).",
                status=413,
                details={"index": index, "length": len(message.content), "limit": max_chars},
            )


def session_append(
    *,
    key: str,
    messages: list[MessageIn],
    platform: str = "",
    channel: str = "",
    thread: str = "",
    title: str = "",
    context_size: int | None = None,
) -> AppendResult:
    """Append messages to the session `key`, creating it on first use. Messages whose
    `external_id` the session already holds (a bot's retry) are not stored again and are
    reported in `duplicate_external_ids`. Returns the session's last `context_size` messages."""
    key = session_key_validate(key)
    _validate_messages(messages)
    if not platform and not channel:
        platform, channel, thread = _place_from_key(key)
    humans = list(dict.fromkeys(m.author for m in messages if m.author and not m.is_bot))
    context_size = settings.KIOKU_SESSION_CONTEXT_MESSAGES if context_size is None else context_size
    upsert_sql, upsert_params = _session_upsert_sql(
        key=key,
        platform=platform,
        channel=channel,
        thread=thread,
        title=title,
        participants=humans,
    )
    statements = [
        Statement(upsert_sql, upsert_params),
        Statement(*_messages_insert_sql(key=key, messages=messages)),
    ]
    if context_size > 0:
        statements.append(
            Statement(RECENT_MESSAGES_SQL.format(session=_SESSION_ID_BY_KEY), [key, context_size])
        )
    # One round trip: the statements go as one string, which PostgreSQL runs as one implicit
    # transaction (all or nothing; inside a caller's transaction, as part of it). Each sees what
    # the ones before it wrote, so the insert finds the session and the context holds the new
    # messages. Before: BEGIN, three statements, COMMIT.
    with connection.cursor() as cursor:
        rows = fetch_statements(cursor, statements)
    session_id, version, created = rows[0][0]
    stored = [external_id for (external_id,) in rows[1]]
    context = context_messages(rows[2]) if context_size > 0 else []
    duplicates = _duplicates([m.external_id for m in messages], [eid for eid in stored if eid])
    return AppendResult(
        session_id=session_id,
        key=key,
        created=created,
        accepted=len(stored),
        version=version,
        duplicate_external_ids=duplicates,
        context=context,
    )


def _place_from_key(key: str) -> list[str]:
    """Platform, channel and thread read from a derived key ("discord:guild-channel:thread"),
    which says where the session happens; empty for a key without ':'."""
    return ([*key.split(":", 2), "", ""] if ":" in key else ["", "", ""])[:3]


def _session_upsert_sql(
    *,
    key: str,
    platform: str,
    channel: str,
    thread: str,
    title: str,
    participants: list[str],
) -> tuple[str, list]:
    """The statement that creates the session, or locks its row and bumps its version (before
    any message id is drawn: the archiver's watermark relies on it); it returns (id, version,
    created)."""
    sql = f"""
        INSERT INTO {SESSION_TABLE} AS s (
            key, platform, channel, thread, title, participants, status, version,
            last_active_at, created_at, archived_through_id, archived_message_count,
            archive_attempts, skip_reason, archive_note
        ) VALUES (%s, %s, %s, %s, %s, %s::varchar[], 'active', 1, now(), now(), 0, 0, 0, '', '')
        ON CONFLICT (key) DO UPDATE SET
            version = s.version + 1,
            last_active_at = greatest(s.last_active_at, now()),
            status = 'active',
            skip_reason = '',
            participants = s.participants || ARRAY(
                SELECT unnest(EXCLUDED.participants) EXCEPT SELECT unnest(s.participants)
            )
        RETURNING id, version, (xmax = 0) AS created
    """
    return sql, [key, platform[:50], channel[:200], thread[:200], title[:200], participants]


# The session of a key, once the upsert before it in the same string has created or locked it.
_SESSION_ID_BY_KEY = f"(SELECT id FROM {SESSION_TABLE} WHERE key = %s)"


def _messages_insert_sql(*, key: str, messages: list[MessageIn]) -> tuple[str, list]:
    """The statement that inserts every message, skipping external ids the session already
    holds; it returns the external id ('' for none) of each message stored."""
    sql = f"""
        INSERT INTO {MESSAGE_TABLE} (session_id, role, author, is_bot, content, external_id, created_at)
        SELECT {_SESSION_ID_BY_KEY}, m.role, m.author, m.is_bot, m.content, m.external_id,
            coalesce(m.created_at, now())
        FROM unnest(%s::text[], %s::text[], %s::bool[], %s::text[], %s::text[], %s::timestamptz[])
            AS m(role, author, is_bot, content, external_id, created_at)
        ON CONFLICT (session_id, external_id) WHERE external_id <> '' DO NOTHING
        RETURNING external_id
    """
    return sql, [
        key,
        [m.role for m in messages],
        [m.author[:200] for m in messages],
        [m.is_bot for m in messages],
        [m.content for m in messages],
        [m.external_id or "" for m in messages],
        [m.created_at for m in messages],
    ]


def _duplicates(sent: list[str | None], stored: list[str]) -> list[str]:
    """External ids sent but not stored (already in the session, or twice in this request)."""
    remaining = list(stored)
    duplicates = []
    for external_id in sent:
        if not external_id:
            continue
        if external_id in remaining:
            remaining.remove(external_id)
        else:
            duplicates.append(external_id)
    return duplicates


@transaction.atomic
def session_delete(*, session: ChatSession) -> dict[str, int]:
    """Delete a session, its messages and the knowledge archived from it (personal-data
    requests). Knowledge the session was merely linked to as a near-duplicate belongs to
    another session and stays. The row lock makes a concurrent archive fail its optimistic
    write and roll back, so no source is left behind."""
    locked = ChatSession.objects.select_for_update().filter(pk=session.pk).first()
    if locked is None:
        return {"messages": 0, "sources": 0}
    sources = 0
    # The FK is SET_NULL on purpose; the uri finds an archive even if the link was lost.
    own = KnowledgeSource.objects.filter(uri=session_source_uri(locked))
    if locked.source_id:
        own = own | KnowledgeSource.objects.filter(pk=locked.source_id)
    for source in own.distinct():
        source_delete(source=source)
        sources += 1
    messages = locked.messages.count()
    locked.delete()
    return {"messages": messages, "sources": sources}


def session_source_uri(session: ChatSession) -> str:
    """The one knowledge source a session archives into (re-archiving updates it)."""
    return f"session://{session.pk}"
