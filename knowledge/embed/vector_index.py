"""The vector index as a whole: rebuild it, clear it, keep the planner's statistics fresh.

"The index" is the vectors on the chunks (and the HNSW index over them), not the knowledge base:
rebuilding re-chunks sources and queues what is owed, clearing drops vectors. Neither deletes a
source, a chunk or anything a curator wrote. The dashboard, the API and the maintenance schedule
all call these functions.
"""

import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from knowledge.embed.enqueue import embedding_enqueue
from knowledge.embed.spaces import space_state
from knowledge.ingest.ingestion import source_rechunk
from knowledge.models import (
    EmbeddingDue,
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
    embedding_requeue_fields,
)
from knowledge.services import chunks_mark_for_embedding

# Chunk fields a curator sets; re-chunking recreates the rows, so rebuild carries them over.
CURATED_FIELDS = ("enabled", "pinned", "valid_until")


@dataclass(frozen=True)
class IndexBuildResult:
    total_documents: int
    total_entries: int
    duration_ms: int
    embeddings_kept: int = 0
    queued: int = 0


def index_rebuild() -> IndexBuildResult:
    """Re-chunk every enabled, non-failed source and queue each chunk that lacks a vector of the
    space being filled (the active one, or the target of a model switch).

    Chunks whose text did not change keep their vectors (and their enabled/pinned/valid-until
    flags), so only new text and vectors of an older model cost provider calls. Each source is
    rebuilt in its own transaction: search keeps working, and an interrupted rebuild can simply
    be run again.
    """
    started = time.monotonic()
    space = space_state().writing
    source_ids = list(
        KnowledgeSource.objects.searchable()
        .exclude(status=SourceStatus.FAILED)
        .filter(Exists(KnowledgeChunk.objects.filter(source=OuterRef("pk"))))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    documents = entries = kept = queued = 0
    for source_id in source_ids:
        with transaction.atomic():
            source = KnowledgeSource.objects.select_for_update().filter(pk=source_id).first()
            if source is None:  # deleted since the list was read
                continue
            curated = list(
                source.chunks.exclude(enabled=True, pinned=False, valid_until__isnull=True).values(
                    "content_hash", *CURATED_FIELDS
                )
            )
            result = source_rechunk(source=source)
            for flags in curated:
                source.chunks.filter(content_hash=flags.pop("content_hash")).update(**flags)
            queued += chunks_mark_for_embedding(
                chunks=source.chunks.exclude(
                    embedding_status=EmbeddingStatus.DONE, **{space.model_column: space.model}
                )
            )
        documents += 1
        entries += result.chunks
        kept += result.embeddings_kept
    analyze_after_bulk_load()
    if queued:
        embedding_enqueue()
    return IndexBuildResult(
        total_documents=documents,
        total_entries=entries,
        duration_ms=round((time.monotonic() - started) * 1000),
        embeddings_kept=kept,
        queued=queued,
    )


@transaction.atomic
def index_clear() -> int:
    """Empty the vector index: every chunk loses its vectors (in both slots) and is owed one again
    (the embedding processor re-embeds it for the space being filled; a model switch in progress
    goes on). The text, the chunks and the curators' flags stay; this does not empty the
    knowledge base. Returns how many chunks were cleared."""
    now = timezone.now()
    cleared = KnowledgeChunk.objects.filter(
        Q(embedding__isnull=False)
        | ~Q(embedding_model="")
        | Q(embedding_alt__isnull=False)
        | ~Q(embedding_alt_model="")
        | ~Q(embedding_status=EmbeddingStatus.PENDING)
    ).update(
        embedding=None,
        embedding_model="",
        embedding_alt=None,
        embedding_alt_model="",
        embedding_text_hash="",
        embedded_at=None,
        **embedding_requeue_fields(),
        updated_at=now,
    )
    KnowledgeSource.objects.filter(
        status__in=[SourceStatus.READY, SourceStatus.PARTIAL],
        pk__in=KnowledgeChunk.objects.values("source_id"),
    ).update(status=SourceStatus.PENDING)
    analyze_after_bulk_load()
    if cleared:
        embedding_enqueue()
    return cleared


def analyze_if_bulk_loaded(*, min_changed_rows: int = 10_000) -> bool:
    """ANALYZE the chunk table when many rows changed since its last analyze (a bulk load),
    before autovacuum gets to it. Run by the maintenance schedule."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables WHERE relname = %s",
            [KnowledgeChunk._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    changed, live = row
    if changed < min_changed_rows and changed <= 0.1 * max(live, 1):
        return False
    analyze_after_bulk_load()
    return True


def analyze_after_bulk_load() -> None:
    """Refresh the planner's statistics on the knowledge tables and the embedding queue. After
    a bulk load or a rebuild they describe a table that no longer exists, and the planner may
    pick a sequential scan over the HNSW or GIN index (or sort the whole queue for a claim)."""
    tables = (KnowledgeSource, KnowledgeChunk, EmbeddingDue)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(model._meta.db_table for model in tables))
