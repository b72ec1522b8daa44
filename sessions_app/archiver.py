"""Archiving idle chat sessions into knowledge, so what was said in them can be searched.

One archive of one session, in one REPEATABLE READ transaction:

1. Read the session (its `version`) and its messages above the watermark `archived_through_id`
   from one snapshot.
2. Decide: nothing new (already archived), skip with a reason (bot-only, fewer than
   KIOKU_SESSION_MIN_USER_MESSAGES user messages — the messages stay for a later archive), or
   archive.
3. Cut the messages into chunks with a sliding window: messages are packed up to
   KIOKU_SESSION_WINDOW_TOKENS, and each chunk starts with the last KIOKU_SESSION_OVERLAP_MESSAGES
   messages of the previous one (のりしろ), across archives too (the kept messages provide it).
   Personal data is masked in the chunks only.
4. Near-duplicate gate: when every new chunk closely matches chunks of another session's
   knowledge (pg_trgm similarity), the session is linked to that source instead of storing the
   same text twice.
5. Write the session's one source (uri `session://<id>`: re-archiving updates it, keeping the
   earlier chunks and their embeddings), then the session row *only if its version is still the
   one read* (optimistic lock), then prune archived messages beyond the last
   KIOKU_SESSION_KEEP_MESSAGES.

A message appended meanwhile bumps the version (or makes PostgreSQL refuse the update as a
serialization failure): the whole transaction rolls back and is retried from a fresh snapshot,
so the message is either archived by the retry or stays above the watermark for the next run.
Nothing is deleted that was not archived: pruning only touches ids at or below the watermark.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from knowledge.ingest.base import ChunkDraft, IngestResult
from knowledge.ingest.chunking import ChunkingConfig, chunk_text
from knowledge.ingest.ingestion import content_hash, source_ingest_chunks
from knowledge.models import KnowledgeChunk, KnowledgeSource, SourceType, searchable_chunk_sql
from knowledge.tokens import get_token_counter
from sessions_app.errors import SESSION_ARCHIVE_CONFLICT, SessionError
from sessions_app.masking import pii_mask
from sessions_app.models import MESSAGE_TABLE, ChatSession, Message, SessionStatus, SkipReason
from sessions_app.services import session_source_uri

logger = logging.getLogger(__name__)

Outcome = Literal["archived", "linked", "skipped", "unchanged", "not_idle", "gone"]

MAX_ATTEMPTS = 3


class _VersionConflict(Exception):
    """The session changed after our snapshot: roll back and retry."""


@dataclass
class ArchiveOutcome:
    session_id: int
    outcome: Outcome
    messages: int = 0
    chunks: int = 0
    source_id: int | None = None
    reason: str = ""
    attempts: int = 1


@dataclass
class ArchiveRun:
    outcomes: list[ArchiveOutcome] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(item.outcome == outcome for item in self.outcomes)

    def summary(self) -> dict[str, int]:
        counts = {name: self.count(name) for name in ("archived", "linked", "skipped", "unchanged")}
        return {**counts, "conflicts": len(self.conflicts)}


# --- Sliding window ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    message: Message
    text: str
    tokens: int


def message_windows(
    token_counts: list[int], *, first_new: int, max_tokens: int, overlap: int
) -> list[list[int]]:
    """Group message indexes into windows of at most `max_tokens` (a longer message is a window
    of its own). Each window starts with the last `overlap` messages of the previous window; the
    first starts with the `overlap` messages before `first_new` (already archived, kept as
    context). The overlap yields to new messages: it is trimmed from the front when it and the
    next message do not fit, so every window adds at least one new message."""
    windows: list[list[int]] = []
    carry = list(range(max(0, first_new - overlap), first_new)) if overlap else []
    index = first_new
    while index < len(token_counts):
        window = list(carry)
        used = sum(token_counts[i] for i in window)
        while window and used + token_counts[index] > max_tokens:
            used -= token_counts[window.pop(0)]
        window.append(index)
        used += token_counts[index]
        index += 1
        while index < len(token_counts) and used + token_counts[index] <= max_tokens:
            window.append(index)
            used += token_counts[index]
            index += 1
        windows.append(window)
        carry = window[-overlap:] if overlap else []
    return windows


def _render(message: Message) -> str:
    speaker = message.author or message.role
    marker = " (bot)" if message.is_bot else ""
    return f"{speaker}{marker}: {pii_mask(message.content.strip())}"


def session_chunk_drafts(messages: list[Message], *, first_new: int = 0) -> list[ChunkDraft]:
    """Chunks for messages[first_new:], with messages[:first_new] available as overlap."""
    counter = get_token_counter()
    max_tokens = settings.KIOKU_SESSION_WINDOW_TOKENS
    texts = [_render(message) for message in messages]
    # +1 for the newline joining lines.
    counts = [count + 1 for count in counter.encode_len_many(texts)]
    drafts = []
    for window in message_windows(
        counts,
        first_new=first_new,
        max_tokens=max_tokens,
        overlap=settings.KIOKU_SESSION_OVERLAP_MESSAGES,
    ):
        chosen = [messages[i] for i in window]
        location = {
            "message_ids": [message.pk for message in chosen],
            "started_at": chosen[0].created_at.isoformat(),
            "ended_at": chosen[-1].created_at.isoformat(),
            "authors": list(dict.fromkeys(m.author for m in chosen if m.author)),
        }
        text = "\n".join(texts[i] for i in window)
        if len(window) == 1 and counts[window[0]] > max_tokens:
            # One message longer than a window: cut it like a document, same location.
            config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=max_tokens // 8)
            for part, piece in enumerate(chunk_text(text, config=config, counter=counter)):
                drafts.append(
                    ChunkDraft(
                        content=piece.content,
                        token_count=piece.token_count,
                        location={**location, "part": part},
                        token_counter=piece.token_counter,
                    )
                )
            continue
        drafts.append(
            ChunkDraft(
                content=text,
                token_count=counter.count(text),
                location=location,
                token_counter=counter.name,
            )
        )
    return drafts


# --- Near-duplicate gate -----------------------------------------------------------------------


def near_duplicate_source(drafts: list[ChunkDraft], *, exclude_uri: str) -> KnowledgeSource | None:
    """The session source whose chunks match every one of `drafts` at least as closely as
    KIOKU_SESSION_DUPLICATE_SIMILARITY (pg_trgm), if any."""
    if not drafts:
        return None
    chunk_table = KnowledgeChunk._meta.db_table
    source_table = KnowledgeSource._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.source_id, count(DISTINCT n.ordinal) AS matched
            FROM unnest(%s::text[]) WITH ORDINALITY AS n(content, ordinal)
            JOIN {chunk_table} c ON similarity(c.content, n.content) >= %s
            JOIN {source_table} s ON s.id = c.source_id
            WHERE {searchable_chunk_sql("c", "s")} AND s.source_type = %s AND s.uri <> %s
            GROUP BY c.source_id ORDER BY matched DESC, c.source_id LIMIT 1
            """,
            [
                [draft.content for draft in drafts],
                settings.KIOKU_SESSION_DUPLICATE_SIMILARITY,
                SourceType.SESSION,
                exclude_uri,
            ],
        )
        row = cursor.fetchone()
    if row is None or row[1] < len(drafts):
        return None
    return KnowledgeSource.objects.get(pk=row[0])


# --- One session -------------------------------------------------------------------------------


def session_archive(
    *,
    session_id: int,
    require_idle: bool = False,
    before_write: Callable[[int], None] | None = None,
) -> ArchiveOutcome:
    """Archive one session now (admin, API) or, with `require_idle`, only if it has been idle
    for KIOKU_SESSION_IDLE_MINUTES (the schedule). Retries on a concurrent change; raises
    SESSION_ARCHIVE_CONFLICT when the session keeps changing. `before_write(attempt)` runs
    between the read and the write (tests use it to append from another connection)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            outcome = _archive_once(
                session_id, require_idle=require_idle, before_write=before_write, attempt=attempt
            )
        except _VersionConflict:
            logger.info("Session %s changed while archiving (attempt %s)", session_id, attempt)
            continue
        except (OperationalError, IntegrityError) as exc:
            # 40001: a concurrent append or delete changed a row we read (REPEATABLE READ);
            # 23505: another archive of the same session created its source first.
            if getattr(exc.__cause__, "sqlstate", None) not in ("40001", "23505"):
                raise
            logger.info("Session %s: %s (attempt %s)", session_id, exc, attempt)
            continue
        outcome.attempts = attempt
        return outcome
    raise SessionError(
        SESSION_ARCHIVE_CONFLICT,
        f"The session kept receiving messages; {MAX_ATTEMPTS} archive attempts conflicted. "
        "It will be archived once it is idle.",
        status=409,
        details={"session_id": session_id, "attempts": MAX_ATTEMPTS},
    )


def _archive_once(
    session_id: int,
    *,
    require_idle: bool,
    before_write: Callable[[int], None] | None,
    attempt: int,
) -> ArchiveOutcome:
    """One attempt: read the session and its new messages from one snapshot, then decide
    (unchanged, skipped, linked or archived) and write. Raises _VersionConflict when the session
    changed after the read."""
    with transaction.atomic():
        _use_repeatable_read()
        session = ChatSession.objects.filter(pk=session_id).first()
        if session is None:
            return ArchiveOutcome(session_id, "gone")
        idle_before = timezone.now() - timedelta(minutes=settings.KIOKU_SESSION_IDLE_MINUTES)
        if require_idle and session.last_active_at >= idle_before:
            return ArchiveOutcome(session_id, "not_idle", reason="received messages recently")
        read_version = session.version
        new = list(session.messages.filter(id__gt=session.archived_through_id).order_by("id"))
        if before_write is not None:
            before_write(attempt)
        if not new:
            return _mark_unchanged(session, read_version)
        reason = _skip_reason(new)
        if reason:
            return _mark_skipped(session, read_version, new=new, reason=reason)
        return _archive_messages(session, read_version, new=new)


def _use_repeatable_read() -> None:
    # Only possible as the transaction's first statement: inside an outer transaction
    # (tests, demo loading) that transaction's isolation level applies.
    if not connection.savepoint_ids:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _mark_unchanged(session: ChatSession, read_version: int) -> ArchiveOutcome:
    """Nothing new since the last archive: the session is archived as it stands."""
    if session.status != SessionStatus.ARCHIVED:
        _write_session(session, read_version, status=SessionStatus.ARCHIVED)
    return ArchiveOutcome(session.pk, "unchanged", source_id=session.source_id)


def _mark_skipped(
    session: ChatSession, read_version: int, *, new: list[Message], reason: str
) -> ArchiveOutcome:
    """Declined (bot-only, too few user messages): the messages stay for a later archive."""
    _write_session(
        session,
        read_version,
        status=SessionStatus.SKIPPED,
        skip_reason=reason,
        archive_attempts=F("archive_attempts") + 1,
    )
    return ArchiveOutcome(session.pk, "skipped", messages=len(new), reason=SkipReason(reason).label)


def _archive_messages(
    session: ChatSession, read_version: int, *, new: list[Message]
) -> ArchiveOutcome:
    """Chunk the new messages (after the kept overlap), link them to a near-duplicate or store
    them in the session's source, move the watermark, then prune."""
    kept = _overlap_messages(session)
    drafts = session_chunk_drafts(kept + new, first_new=len(kept))
    uri = session_source_uri(session)
    watermark = new[-1].pk
    archived = {
        "archived_through_id": watermark,
        "archived_at": timezone.now(),
        "archived_message_count": F("archived_message_count") + len(new),
        "archive_attempts": F("archive_attempts") + 1,
        "skip_reason": "",
    }
    duplicate = None if session.source_id else near_duplicate_source(drafts, exclude_uri=uri)
    if duplicate is not None:
        outcome = _link_to_duplicate(session, read_version, duplicate, new=new, archived=archived)
    else:
        outcome = _store_and_mark(
            session, read_version, drafts, uri=uri, new=new, kept=kept, archived=archived
        )
    _prune(session.pk, watermark)
    return outcome


def _overlap_messages(session: ChatSession) -> list[Message]:
    """The last KIOKU_SESSION_OVERLAP_MESSAGES archived messages the session kept, oldest first:
    the first new chunk starts with them."""
    overlap = settings.KIOKU_SESSION_OVERLAP_MESSAGES
    if not (overlap and session.archived_through_id):
        return []
    kept = session.messages.filter(id__lte=session.archived_through_id).order_by("-id")[:overlap]
    return list(kept)[::-1]


def _link_to_duplicate(
    session: ChatSession,
    read_version: int,
    duplicate: KnowledgeSource,
    *,
    new: list[Message],
    archived: dict[str, Any],
) -> ArchiveOutcome:
    note = f"Near-duplicate of '{duplicate.title}' (source {duplicate.pk}); linked, not stored."
    _write_session(
        session,
        read_version,
        status=SessionStatus.ARCHIVED,
        duplicate_of_id=duplicate.pk,
        archive_note=note[:300],
        **archived,
    )
    return ArchiveOutcome(
        session.pk, "linked", messages=len(new), source_id=duplicate.pk, reason=note
    )


def _store_and_mark(
    session: ChatSession,
    read_version: int,
    drafts: list[ChunkDraft],
    *,
    uri: str,
    new: list[Message],
    kept: list[Message],
    archived: dict[str, Any],
) -> ArchiveOutcome:
    result = _store(session, drafts, uri=uri, new=new, kept=kept)
    _write_session(
        session,
        read_version,
        status=SessionStatus.ARCHIVED,
        source_id=result.source.pk,
        archive_note=f"{len(new)} messages → {len(drafts)} new chunks.",
        **archived,
    )
    return ArchiveOutcome(
        session.pk,
        "archived",
        messages=len(new),
        chunks=len(drafts),
        source_id=result.source.pk,
    )


def _skip_reason(messages: list[Message]) -> str:
    if all(message.is_bot for message in messages):
        return SkipReason.BOT_ONLY
    users = sum(message.is_user_message for message in messages)
    if users < settings.KIOKU_SESSION_MIN_USER_MESSAGES:
        return SkipReason.TOO_FEW_USER_MESSAGES
    return ""


def _write_session(session: ChatSession, read_version: int, **changes: Any) -> None:
    """The optimistic write: applies only if nobody changed the session since our read."""
    updated = ChatSession.objects.filter(pk=session.pk, version=read_version).update(
        version=F("version") + 1, **changes
    )
    if not updated:
        raise _VersionConflict


def _store(
    session: ChatSession,
    drafts: list[ChunkDraft],
    *,
    uri: str,
    new: list[Message],
    kept: list[Message],
) -> IngestResult:
    """Append the new chunks to the session's source (the earlier chunks stay, with their
    embeddings, through the ingestion path's reuse by hash)."""
    existing = KnowledgeSource.objects.filter(uri=uri).first()
    earlier = (
        [
            ChunkDraft(
                content=c.content,
                token_count=c.token_count,
                location=c.location,
                token_counter=c.token_counter,
            )
            for c in existing.chunks.order_by("ordinal")
        ]
        if existing
        else []
    )
    every = earlier + drafts
    participants = sorted(
        set(session.participants) | {m.author for m in new if m.author and not m.is_bot}
    )
    first_at = (existing.metadata.get("started_at") if existing else None) or (
        (kept or new)[0].created_at.isoformat()
    )
    metadata = {
        "platform": session.platform,
        "channel": session.channel,
        "thread": session.thread,
        "participants": participants,
        "session_id": session.pk,
        "session_key": session.key,
        "started_at": first_at,
        "ended_at": new[-1].created_at.isoformat(),
    }
    digest = content_hash("\n".join(content_hash(draft.content) for draft in every))
    return source_ingest_chunks(
        drafts=every,
        raw_hash=digest,
        byte_size=sum(len(draft.content.encode()) for draft in every),
        source_type=SourceType.SESSION,
        title=_title(session),
        uri=uri,
        metadata=metadata,
    )


def _title(session: ChatSession) -> str:
    if session.title:
        return session.title
    where = " ".join(part for part in (session.platform, session.channel, session.thread) if part)
    return f"Chat {where or session.key}"[:500]


def _prune(session_id: int, watermark: int) -> None:
    """Delete archived messages beyond the last KIOKU_SESSION_KEEP_MESSAGES. Only ids at or
    below the watermark are touched: a message not archived yet is never deleted."""
    keep = settings.KIOKU_SESSION_KEEP_MESSAGES
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {MESSAGE_TABLE} WHERE session_id = %s AND id <= %s AND id NOT IN (
                SELECT id FROM {MESSAGE_TABLE} WHERE session_id = %s AND id <= %s
                ORDER BY id DESC LIMIT %s
            )
            """,
            [session_id, watermark, session_id, watermark, keep],
        )


# --- The schedule ------------------------------------------------------------------------------


def sessions_archive_idle(*, limit: int | None = None) -> ArchiveRun:
    """Archive every session idle for KIOKU_SESSION_IDLE_MINUTES (oldest first). A session that
    keeps conflicting is left for the next run."""
    idle_before = timezone.now() - timedelta(minutes=settings.KIOKU_SESSION_IDLE_MINUTES)
    ids = list(
        ChatSession.objects.archive_due(idle_before=idle_before)
        .order_by("last_active_at")
        .values_list("pk", flat=True)[: limit or settings.KIOKU_SESSION_ARCHIVE_BATCH]
    )
    run = ArchiveRun()
    for session_id in ids:
        try:
            run.outcomes.append(session_archive(session_id=session_id, require_idle=True))
        except SessionError as exc:
            if exc.code != SESSION_ARCHIVE_CONFLICT:
                raise
            run.conflicts.append(session_id)
    return run
