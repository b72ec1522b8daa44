"""Curation: what staff do to sources and chunks (admin, pages and API call these)."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import ApiError
from knowledge.embed.enqueue import embedding_enqueue
from knowledge.errors import (
    CHUNK_EMPTY_CONTENT,
    SOURCE_INVALID_SUPERSEDE,
    SOURCE_INVALID_TITLE,
    SOURCE_INVALID_TYPE,
)
from knowledge.feedback import chunk_feedback_follow_text
from knowledge.ingest.ingestion import content_hash
from knowledge.models import KnowledgeChunk, KnowledgeSource, SourceType, embedding_requeue_fields
from knowledge.tokens import get_token_counter

UNSET = object()


class CurationError(ApiError):
    """A curation request the caller must fix (empty chunk text, self-supersession…)."""


def sources_set_enabled(*, sources: QuerySet[KnowledgeSource], enabled: bool) -> int:
    return sources.update(enabled=enabled, updated_at=timezone.now())


@transaction.atomic
def source_update(
    *,
    source: KnowledgeSource,
    title: str | None = None,
    source_type: str | None = None,
    metadata: dict | None = None,
    replace_metadata: bool = False,
    enabled: bool | None = None,
    fetch_interval: timedelta | None | object = UNSET,
) -> KnowledgeSource:
    """Change what describes a source; its text and chunks stay as they are."""
    if title is not None:
        if not title.strip():
            raise CurationError(SOURCE_INVALID_TITLE, "A source needs a non-empty title.")
        source.title = title.strip()[:500]
    if source_type is not None:
        if source_type not in SourceType.values:
            raise CurationError(SOURCE_INVALID_TYPE, f"Unknown source type {source_type!r}.")
        source.source_type = source_type
    if metadata is not None:
        source.metadata = metadata if replace_metadata else {**source.metadata, **metadata}
    if enabled is not None:
        source.enabled = enabled
    if fetch_interval is not UNSET:
        source.fetch_interval = fetch_interval
    source.save()
    return source


@transaction.atomic
def source_delete(*, source: KnowledgeSource) -> None:
    source.chunks.all().delete()
    source.delete()


@transaction.atomic
def source_supersede(*, old: KnowledgeSource, new: KnowledgeSource) -> KnowledgeSource:
    """Mark `old` as replaced by a newer revision: it leaves search and links to `new`."""
    if old.pk == new.pk:
        raise CurationError(SOURCE_INVALID_SUPERSEDE, "A source cannot supersede itself.")
    if new.superseded_by_id == old.pk:
        raise CurationError(
            SOURCE_INVALID_SUPERSEDE, "That would make the two sources supersede each other."
        )
    old.superseded_by = new
    old.enabled = False
    old.save(update_fields=["superseded_by", "enabled", "updated_at"])
    return old


@transaction.atomic
def chunk_update(
    *,
    chunk: KnowledgeChunk,
    content: str | None = None,
    enabled: bool | None = None,
    pinned: bool | None = None,
    valid_until: datetime | None | object = UNSET,
) -> KnowledgeChunk:
    """Edit a chunk. New text drops the old vector and queues the chunk for re-embedding; the
    outcome signals of the old text no longer count for it (knowledge/feedback.py)."""
    text_changed = False
    if content is not None:
        content = content.strip()
        if not content:
            raise CurationError(CHUNK_EMPTY_CONTENT, "A chunk cannot be empty; disable it instead.")
        if content != chunk.content:
            text_changed = True
            chunk.content = content
            chunk.content_hash = content_hash(content)
            counter = get_token_counter()
            chunk.token_count = max(1, counter.count(content))
            chunk.token_counter = counter.name
            _reset_embedding(chunk, drop_vector=True)
            _mark_sources_pending([chunk.source_id])
            embedding_enqueue()
    if enabled is not None:
        chunk.enabled = enabled
    if pinned is not None:
        chunk.pinned = pinned
    if valid_until is not UNSET:
        chunk.valid_until = valid_until
    chunk.save()
    if text_changed:
        chunk_feedback_follow_text(source_id=chunk.source_id)
        chunk.refresh_from_db(fields=["feedback_boost"])
    return chunk


def chunks_mark_for_embedding(
    *, chunks: QuerySet[KnowledgeChunk] | Iterable[KnowledgeChunk]
) -> int:
    """Queue chunks for (re-)embedding. Their current vectors stay searchable until replaced."""
    ids = [chunk.pk for chunk in chunks] if not isinstance(chunks, QuerySet) else None
    queryset = chunks if ids is None else KnowledgeChunk.objects.filter(pk__in=ids)
    _mark_sources_pending(queryset.values("source_id"))
    embedding_enqueue()
    return queryset.update(**embedding_requeue_fields(), updated_at=timezone.now())


def _reset_embedding(chunk: KnowledgeChunk, *, drop_vector: bool) -> None:
    if drop_vector:
        # Both slots: a vector of the old text is wrong in every embedding space.
        chunk.embedding = None
        chunk.embedding_model = ""
        chunk.embedding_alt = None
        chunk.embedding_alt_model = ""
        chunk.embedding_text_hash = ""
        chunk.embedded_at = None
    for field, value in embedding_requeue_fields().items():
        setattr(chunk, field, value)


def _mark_sources_pending(source_ids: Iterable[int]) -> None:
    KnowledgeSource.objects.filter(pk__in=source_ids).exclude(status="failed").update(
        status="pending", updated_at=timezone.now()
    )
