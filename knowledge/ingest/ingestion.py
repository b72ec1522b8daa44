"""Turning documents into sources and chunks.

Re-ingesting an unchanged document (same content hash) writes nothing. A changed document
replaces its chunks in one transaction, and chunks whose text is unchanged keep their embeddings
(matched by content hash), so only new text goes to the embedding provider.
"""

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models.expressions import RawSQL
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from knowledge.embed.enqueue import embedding_enqueue
from knowledge.embed.spaces import VectorSpace, space_state_locked
from knowledge.errors import SOURCE_INVALID_TYPE, SOURCE_TOO_LARGE
from knowledge.feedback import chunk_feedback_follow_text
from knowledge.ingest.base import (
    ChunkDraft,
    ExtractedDocument,
    IngestError,
    IngestResult,
    Outcome,
    Section,
)
from knowledge.ingest.chunk_copy import ChunkRow, chunks_copy
from knowledge.ingest.chunking import chunk_sections, config_for_source_type
from knowledge.ingest.parsers import ExtractionError, extract, extract_text
from knowledge.models import (
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
    SourceType,
)
from knowledge.tokens import get_token_counter

logger = logging.getLogger(__name__)


def upload_size_check(size: int) -> None:
    """The one limit on a document handed to Kioku (KIOKU_MAX_UPLOAD_BYTES), for uploads, the
    text API, the pages and the CLI alike: larger ones are refused before anything is parsed or
    stored."""
    # Read at call time so the limit follows settings changes (and tests' `settings` fixture).
    limit = settings.KIOKU_MAX_UPLOAD_BYTES
    if size > limit:
        raise IngestError(
            SOURCE_TOO_LARGE,
            f"Too large: {filesizeformat(size)} ({size:,} bytes). The upload limit is "
            f"{filesizeformat(limit)} ({limit:,} bytes, KIOKU_MAX_UPLOAD_BYTES). Split the "
            "document or ask an administrator to raise the limit.",
            status=413,
            details={"size": size, "limit": limit},
        )


def content_hash(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def source_ingest_file(
    *,
    data: bytes,
    filename: str | None = None,
    content_type: str | None = None,
    source_type: str = SourceType.DOCUMENT,
    title: str | None = None,
    uri: str = "",
    metadata: dict | None = None,
) -> IngestResult:
    """Ingest uploaded or local file bytes (text, Markdown, HTML or PDF)."""
    upload_size_check(len(data))
    return _ingest(
        raw_hash=content_hash(data),
        byte_size=len(data),
        parse=lambda: extract(data, filename=filename, content_type=content_type),
        source_type=source_type,
        title=title,
        fallback_title=filename,
        uri=uri,
        metadata=metadata,
    )


def source_ingest_text(
    *,
    text: str,
    text_format: str = "text",
    source_type: str = SourceType.DOCUMENT,
    title: str | None = None,
    uri: str = "",
    metadata: dict | None = None,
) -> IngestResult:
    """Ingest raw text given through the service or the API (format text, markdown or html)."""
    byte_size = len(text.encode("utf-8", errors="replace"))
    upload_size_check(byte_size)
    return _ingest(
        raw_hash=content_hash(text),
        byte_size=byte_size,
        parse=lambda: extract_text(text, format=text_format),
        source_type=source_type,
        title=title,
        fallback_title=None,
        uri=uri,
        metadata=metadata,
    )


def source_ingest_document(
    *,
    document: ExtractedDocument,
    raw_hash: str,
    byte_size: int,
    source_type: str,
    title: str | None = None,
    uri: str = "",
    metadata: dict | None = None,
) -> IngestResult:
    """Ingest an already extracted document (web fetches, archived sessions, cases)."""
    return _ingest(
        raw_hash=raw_hash,
        byte_size=byte_size,
        parse=lambda: document,
        source_type=source_type,
        title=title,
        fallback_title=None,
        uri=uri,
        metadata=metadata,
    )


def source_ingest_chunks(
    *,
    drafts: list[ChunkDraft],
    raw_hash: str,
    byte_size: int,
    source_type: str,
    title: str,
    uri: str,
    metadata: dict | None = None,
) -> IngestResult:
    """Ingest chunks the caller already cut (archived chat sessions: one chunk per window of
    messages, the location naming the messages). Same rules as the other entry points: the uri
    identifies the source, an unchanged raw_hash writes nothing, embeddings are reused by hash."""
    return _ingest(
        raw_hash=raw_hash,
        byte_size=byte_size,
        parse=lambda: ExtractedDocument(sections=[], format="text", title=title),
        source_type=source_type,
        title=title,
        fallback_title=None,
        uri=uri,
        metadata=metadata,
        drafts=drafts,
    )


def source_rechunk(*, source: KnowledgeSource) -> IngestResult:
    """Chunk a source's current text again (e.g. after the chunking settings changed), keeping
    the embeddings of chunks whose text did not change."""
    sections = _sections_from_chunks(source)
    document = ExtractedDocument(sections=sections, format="text", title=source.title)
    with transaction.atomic():
        locked = KnowledgeSource.objects.select_for_update().get(pk=source.pk)
        return _replace_chunks(locked, document, outcome="updated", bump_version=False)


def _ingest(
    *,
    raw_hash: str,
    byte_size: int,
    parse: Callable[[], ExtractedDocument],
    source_type: str,
    title: str | None,
    fallback_title: str | None,
    uri: str,
    metadata: dict | None,
    drafts: list[ChunkDraft] | None = None,
) -> IngestResult:
    if source_type not in SourceType.values:
        raise IngestError(
            SOURCE_INVALID_TYPE,
            f"Unknown source type {source_type!r}; use one of {', '.join(SourceType.values)}.",
        )
    uri = (uri or "").strip()
    existing = KnowledgeSource.objects.filter(uri=uri).first() if uri else None
    if (
        existing is not None
        and existing.content_hash == raw_hash
        and existing.status != SourceStatus.FAILED
    ):
        _touch_unchanged(existing, title=title, metadata=metadata)
        return IngestResult(source=existing, outcome="unchanged")

    try:
        document = parse()
    except ExtractionError as exc:
        return _record_failure(
            existing,
            code=exc.code,
            message=exc.message,
            source_type=source_type,
            title=title or fallback_title or uri or "Untitled",
            uri=uri,
            metadata=metadata,
            raw_hash=raw_hash,
            byte_size=byte_size,
        )

    is_new = existing is None
    with transaction.atomic():
        source = _source_revise(
            existing,
            source_type=source_type,
            title=(title or document.title or fallback_title or uri or "Untitled").strip()[:500],
            uri=uri,
            metadata={**document.metadata, **(metadata or {})},
            raw_hash=raw_hash,
            byte_size=byte_size,
        )
        return _replace_chunks(
            source,
            document,
            outcome="created" if is_new else "updated",
            bump_version=not is_new,
            drafts=drafts,
        )


def _source_revise(
    existing: KnowledgeSource | None,
    *,
    source_type: str,
    title: str,
    uri: str,
    metadata: dict,
    raw_hash: str,
    byte_size: int,
) -> KnowledgeSource:
    """Inside the caller's transaction: a new source, or the existing one locked and given this
    revision's fields (`_replace_chunks` saves them with the chunks)."""
    if existing is None:
        return KnowledgeSource.objects.create(
            source_type=source_type,
            title=title,
            uri=uri,
            metadata=metadata,
            content_hash=raw_hash,
            byte_size=byte_size,
            fetched_at=timezone.now(),
        )
    source = KnowledgeSource.objects.select_for_update().get(pk=existing.pk)
    source.source_type = source_type
    source.title = title
    source.metadata = {**source.metadata, **metadata}
    source.content_hash = raw_hash
    source.byte_size = byte_size
    source.fetched_at = timezone.now()
    return source


def _replace_chunks(
    source: KnowledgeSource,
    document: ExtractedDocument,
    *,
    outcome: Outcome,
    bump_version: bool,
    drafts: list[ChunkDraft] | None = None,
) -> IngestResult:
    """Swap the source's chunks for freshly chunked ones (or the caller's ready `drafts`). Runs
    inside the caller's transaction, with the source row locked, so readers see either the old
    or the new chunks."""
    if drafts is None:
        drafts = chunk_sections(
            document.sections,
            config=config_for_source_type(source.source_type),
            counter=get_token_counter(),
        )
    # Vectors are reused per slot, only those of the space the slot holds now; the share lock
    # keeps a model-switch cutover from slipping between this read and the commit.
    state = space_state_locked()
    reusable = _reusable_vectors(
        source, [space for space in (state.active, state.target) if space is not None]
    )
    embedded_at = dict(
        source.chunks.filter(embedding_status=EmbeddingStatus.DONE).values_list(
            "content_hash", "embedded_at"
        )
    )
    source.chunks.all().delete()
    rows = _chunk_rows(
        source, drafts, reusable=reusable, writing=state.writing, embedded_at=embedded_at
    )
    chunks_copy(rows)
    # Outcome signals belong to the text: those of unchanged passages follow them to their rows.
    chunk_feedback_follow_text(source_id=source.pk)
    kept = sum(row.is_embedded for row in rows)
    if kept < len(rows):
        embedding_enqueue()
    if bump_version:
        source.version += 1
    source.status = SourceStatus.READY if rows and kept == len(rows) else SourceStatus.PENDING
    source.error_code = ""
    source.error_message = ""
    source.save()
    return IngestResult(
        source=source,
        outcome=outcome,
        chunks=len(rows),
        tokens=sum(row.token_count for row in rows),
        embeddings_kept=kept,
    )


def _reusable_vectors(
    source: KnowledgeSource, spaces: list[VectorSpace]
) -> dict[VectorSpace, dict[str, str]]:
    """For each space a slot holds now: the source's vectors of it (as text) by content hash."""
    return {
        space: dict(
            source.chunks.filter(**{space.model_column: space.model})
            .exclude(**{f"{space.column}__isnull": True})
            .annotate(vector_text=RawSQL(f"{space.column}::text", []))
            .values_list("content_hash", "vector_text")
        )
        for space in spaces
    }


def _chunk_rows(
    source: KnowledgeSource,
    drafts: list[ChunkDraft],
    *,
    reusable: dict[VectorSpace, dict[str, str]],
    writing: VectorSpace,
    embedded_at: dict[str, datetime | None],
) -> list[ChunkRow]:
    """The drafts as rows to COPY, each with the vectors its text already had; a row holding a
    vector of the space being filled (`writing`) is embedded, nothing is owed for it."""
    rows = []
    for ordinal, draft in enumerate(drafts):
        digest = content_hash(draft.content)
        vectors = {space.slot: found.get(digest) for space, found in reusable.items()}
        models = {space.slot: space.model for space in reusable if vectors[space.slot]}
        is_embedded = vectors.get(writing.slot) is not None
        rows.append(
            ChunkRow(
                source_id=source.pk,
                ordinal=ordinal,
                content=draft.content,
                content_hash=digest,
                token_count=draft.token_count,
                token_counter=draft.token_counter,
                location=draft.location,
                embedding=vectors.get(1),
                embedding_model=models.get(1, ""),
                embedding_alt=vectors.get(2),
                embedding_alt_model=models.get(2, ""),
                embedded_at=embedded_at.get(digest) if is_embedded else None,
                is_embedded=is_embedded,
            )
        )
    return rows


def _touch_unchanged(source: KnowledgeSource, *, title: str | None, metadata: dict | None) -> None:
    changes = {"fetched_at": timezone.now()}
    if title and title != source.title:
        changes["title"] = title[:500]
    if metadata and {**source.metadata, **metadata} != source.metadata:
        changes["metadata"] = {**source.metadata, **metadata}
    KnowledgeSource.objects.filter(pk=source.pk).update(**changes, updated_at=timezone.now())
    for field, value in changes.items():
        setattr(source, field, value)


def _record_failure(
    existing: KnowledgeSource | None,
    *,
    code: str,
    message: str,
    source_type: str,
    title: str,
    uri: str,
    metadata: dict | None,
    raw_hash: str,
    byte_size: int,
) -> IngestResult:
    """Keep the failure visible on the source. An earlier good revision keeps its chunks."""
    logger.info("Ingest of %r failed: %s %s", uri or title, code, message)
    if existing is None:
        source = KnowledgeSource.objects.create(
            source_type=source_type,
            title=title[:500],
            uri=uri,
            metadata=metadata or {},
            content_hash=raw_hash,
            byte_size=byte_size,
            status=SourceStatus.FAILED,
            error_code=code,
            error_message=message,
            fetched_at=timezone.now(),
        )
    else:
        source = existing
        source.status = SourceStatus.FAILED
        source.error_code = code
        source.error_message = message
        source.content_hash = raw_hash
        source.fetched_at = timezone.now()
        source.save(
            update_fields=[
                "status",
                "error_code",
                "error_message",
                "content_hash",
                "fetched_at",
                "updated_at",
            ]
        )
    return IngestResult(source=source, outcome="failed", error_code=code, error_message=message)


def _sections_from_chunks(source: KnowledgeSource) -> list[Section]:
    """Rebuild sections from stored chunks, undoing the overlap by character offsets."""

    sections: list[Section] = []
    current_key = None
    text = ""
    for chunk in KnowledgeChunk.objects.filter(source=source).order_by("ordinal"):
        location = chunk.location or {}
        key = (tuple(location.get("heading_path") or ()), location.get("page"))
        start = location.get("char_start")
        if key != current_key:
            if current_key is not None and text.strip():
                sections.append(
                    Section(text=text, heading_path=current_key[0], page=current_key[1])
                )
            current_key, text = key, ""
        if isinstance(start, int) and start <= len(text):
            text = text[:start] + chunk.content
        else:
            text = f"{text}\n\n{chunk.content}" if text else chunk.content
    if current_key is not None and text.strip():
        sections.append(Section(text=text, heading_path=current_key[0], page=current_key[1]))
    return sections
