"""The embedding queue table (knowledge/embed/queue.py): triggers keep it in step with the
embeddable rows, claims go through it, and the pipeline's own row updates stay HOT."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from knowledge.embed.pipeline import embedding_claim, embedding_process_batch, pipeline_resume
from knowledge.embed.queue import QUEUE_TABLE
from knowledge.embed.spaces import active_vector_index_names, space_record
from knowledge.ingest.chunk_copy import ChunkRow, chunk_indexes_deferred, chunks_copy
from knowledge.models import (
    EmbeddingDue,
    EmbeddingStatus,
    KnowledgeChunk,
    embeddable_models,
    embedding_requeue_fields,
)
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db

TABLE = KnowledgeChunk._meta.db_table
BOOKKEEPING = {
    "embedding_model",
    "embedding_alt_model",
    "embedding_text_hash",
    "embedding_status",
    "embedding_attempts",
    "embedding_next_attempt_at",
    "embedding_claimed_until",
    "embedding_last_error",
    "embedding_errors",
    "embedded_at",
}


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def document(n: int, name: str = "doc"):
    sections = "\n\n".join(
        f"## Part {i}\n\nStep {i}: replace the E-{i:02d} part." for i in range(n)
    )
    return make_source(text=f"# Manual\n\n{sections}", uri=f"kb://{name}")


def due_now() -> None:
    """Each test runs in one transaction, where now() is its start: make the rows due by then."""
    KnowledgeChunk.objects.update(embedding_next_attempt_at=timezone.now() - timedelta(hours=1))


def queue() -> dict[int, object]:
    return dict(EmbeddingDue.objects.filter(table_name=TABLE).values_list("row_id", "due_at"))


def owed() -> dict[int, object]:
    return dict(
        KnowledgeChunk.objects.filter(embedding_status=EmbeddingStatus.PENDING).values_list(
            "id", "embedding_next_attempt_at"
        )
    )


def test_the_queue_follows_every_way_rows_are_written():
    source = document(5, "a")
    assert len(queue()) == 5 and queue() == owed()

    # COPY (bulk ingestion) is one statement: one trigger call for all its rows.
    chunks_copy(
        [
            ChunkRow(
                source_id=source.pk,
                ordinal=100 + i,
                content=f"Bulk chunk {i}",
                content_hash=f"hash-{i}",
                token_count=3,
                token_counter="estimator",
                location={},
            )
            for i in range(3)
        ]
    )
    assert len(queue()) == 8 and queue() == owed()

    first, second, *_ = source.chunks.order_by("id")
    KnowledgeChunk.objects.filter(pk=first.pk).update(embedding_status=EmbeddingStatus.DONE)
    KnowledgeChunk.objects.filter(pk=second.pk).update(embedding_status=EmbeddingStatus.DEAD)
    assert first.pk not in queue() and second.pk not in queue() and queue() == owed()

    later = timezone.now() + timedelta(hours=1)
    KnowledgeChunk.objects.filter(pk=second.pk).update(
        embedding_status=EmbeddingStatus.PENDING, embedding_next_attempt_at=later
    )
    assert queue()[second.pk] == later and queue() == owed()
    KnowledgeChunk.objects.filter(pk=first.pk).update(**embedding_requeue_fields())
    assert first.pk in queue() and queue() == owed()

    first.delete()
    assert first.pk not in queue() and queue() == owed()
    other = document(2, "b")
    source.delete()  # cascades to its chunks
    assert set(queue()) == set(other.chunks.values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks left before TRUNCATE
        cursor.execute(f"TRUNCATE {TABLE} CASCADE")
    assert queue() == {}


def test_a_claimed_row_is_due_again_when_its_lease_ends():
    document(4)
    due_now()
    rows, lease = embedding_claim(model=KnowledgeChunk, limit=3, lease_seconds=60)
    assert len(rows) == 3
    due = queue()
    assert {due[row.pk] for row in rows} == {lease}
    assert len(due) == 4  # still owed, only not due before the lease ends
    more, _ = embedding_claim(model=KnowledgeChunk, limit=10, lease_seconds=60)
    assert len(more) == 1 and more[0].pk not in {row.pk for row in rows}


@pytest.mark.django_db(transaction=True)
def test_claims_and_write_backs_are_hot_updates():
    """As in a first full embedding (vector index deferred), the two updates the pipeline makes
    to a row (claim, write-back) are HOT: no index entries, the GIN keyword index is left alone.
    Each is its own transaction, as in production, so a page's dead row versions can be pruned
    to make room."""
    document(30)

    def updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")  # flushed once this commits
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = %s::regclass",
                [TABLE],
            )
            return cursor.fetchone()

    space_record()  # the active space and its index exist before the index is deferred
    with chunk_indexes_deferred(active_vector_index_names()):
        before = updates()
        report = embedding_process_batch()
        after = updates()
    assert report.embedded == 30
    updated, hot = after[0] - before[0], after[1] - before[1]
    assert updated == 60  # claim + write-back
    assert hot >= 54, f"only {hot} of {updated} updates were HOT"


def test_no_index_of_an_embeddable_table_uses_a_bookkeeping_column():
    """One such index (even a partial one) makes every claim or write-back a non-HOT update."""
    for model in embeddable_models():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT DISTINCT index.relname, attribute.attname
                FROM pg_index JOIN pg_class AS index ON index.oid = pg_index.indexrelid
                JOIN pg_attribute AS attribute ON attribute.attrelid = pg_index.indrelid
                WHERE pg_index.indrelid = %s::regclass AND attribute.attnum > 0
                  AND (attribute.attnum = ANY(pg_index.indkey)
                       OR pg_get_expr(pg_index.indexprs, pg_index.indrelid) ~ ('\\m' || attribute.attname || '\\M')
                       OR pg_get_expr(pg_index.indpred, pg_index.indrelid) ~ ('\\m' || attribute.attname || '\\M'))
                """,
                [model._meta.db_table],
            )
            used = {(index, column) for index, column in cursor.fetchall() if column in BOOKKEEPING}
        assert used == set(), model


def test_every_embeddable_table_has_the_queue_triggers():
    for model in embeddable_models():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [model._meta.db_table],
            )
            names = {name for (name,) in cursor.fetchall()}
        table = model._meta.db_table
        assert {
            f"{table}_due_{event}" for event in ("inserted", "updated", "deleted", "truncated")
        } <= names
    assert QUEUE_TABLE == EmbeddingDue._meta.db_table
