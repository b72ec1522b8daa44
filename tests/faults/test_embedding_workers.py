"""The embedding pipeline under faults, run by real django-q2 clusters on the test database."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Task

from knowledge.embed.pipeline import pipeline_resume
from knowledge.embed.spaces import halfvec_literal
from knowledge.ingest.ingestion import source_ingest_text
from knowledge.models import EmbeddingDue, KnowledgeChunk, KnowledgeSource
from knowledge.services import chunk_update, source_delete
from support.openai_stub import stub_embedding
from tests.faults.conftest import APPLICATION_NAME, wait_until
from tests.knowledge.factories import make_chunks

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]
RUN = "knowledge.tasks.embedding_run"


@pytest.fixture(autouse=True)
def _running_pipeline(transactional_db):
    pipeline_resume()


def statuses() -> dict[str, int]:
    result: dict[str, int] = {}
    for status in KnowledgeChunk.objects.values_list("embedding_status", flat=True):
        result[status] = result.get(status, 0) + 1
    return result


def all_done() -> bool:
    return set(statuses()) == {"done"}


def distance_to_stub_vector(chunk: KnowledgeChunk) -> float:
    """Cosine distance between the chunk's stored vector and the stub's vector of its text."""
    vector = halfvec_literal(stub_embedding(chunk.content))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT embedding <=> %s::halfvec FROM knowledge_knowledgechunk WHERE id = %s",
            [vector, chunk.pk],
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_mid_batch_leaves_its_rows_embedded_exactly_once(
    start_cluster, vector_writes, broker_enqueue, sweep_until, openai_stub
):
    source = make_chunks(6)
    ids = set(source.chunks.values_list("pk", flat=True))
    openai_stub.hang_next(60)  # the first provider call outlasts the worker
    cluster = start_cluster(timeout=4)
    broker_enqueue(RUN)
    worker = wait_until(
        lambda: cluster.worker_calling(openai_stub.port),
        timeout=30,
        message="no worker called the provider",
    )
    # The run's two embedder threads may have split the rows: the batch the provider answers
    # is written back at once, the hung one keeps its lease.
    time.sleep(1)
    held = set(
        KnowledgeChunk.objects.filter(embedding_claimed_until__isnull=False).values_list(
            "pk", flat=True
        )
    )
    assert held
    worker.kill()  # SIGKILL, in the middle of the batch

    # django-q2 delivers the unacknowledged task again and the sweeper runs: once the lease has
    # ended the lost attempt is recorded, and after its backoff the rows are embedded.
    sweep_until(all_done, timeout=60, message="rows not embedded")
    assert vector_writes() == dict.fromkeys(ids, 1)
    for chunk in KnowledgeChunk.objects.all():  # the killed attempt counted and on record
        assert chunk.embedding_attempts == (2 if chunk.pk in held else 1)
        assert len(chunk.embedding_errors) == (1 if chunk.pk in held else 0)
    source.refresh_from_db()
    assert source.status == "ready"
    assert not EmbeddingDue.objects.exists()


def test_a_task_killed_at_its_timeout_counts_the_attempt_backs_off_and_dead_letters(
    start_cluster, broker_enqueue, openai_stub
):
    source = make_chunks(2)
    openai_stub.hang_next(120, count=50)  # every provider call outlasts the task timeout
    start_cluster(timeout=3)

    def run_once() -> Task:
        task_id = broker_enqueue(RUN)
        return wait_until(
            lambda: Task.objects.filter(id=task_id).first(),
            timeout=30,
            message="the task did not finish",
        )

    first = run_once()
    assert not first.success and "timeout" in first.result
    rows = list(KnowledgeChunk.objects.all())
    assert {(row.embedding_status, row.embedding_attempts) for row in rows} == {("pending", 1)}
    lease_end = max(row.embedding_claimed_until for row in rows)

    # The next run finds the lease of the killed attempt ended: it records the lost attempt and
    # backs the row off instead of claiming it again at once.
    wait_until(
        lambda: (
            not KnowledgeChunk.objects.filter(embedding_claimed_until__gt=timezone.now()).exists()
        ),
        timeout=10,
        message="the lease did not end",
    )
    run_once()
    for row in KnowledgeChunk.objects.all():
        assert (row.embedding_status, row.embedding_attempts) == ("pending", 1)
        assert row.embedding_claimed_until is None
        # Backed off from the lease's end: base 1 s (tests/faults/settings.py), half of it at least.
        assert row.embedding_next_attempt_at >= lease_end + timedelta(seconds=0.5)
        assert "stopped" in row.embedding_last_error
        assert [entry["attempt"] for entry in row.embedding_errors] == [1]

    wait_until(
        lambda: run_once() and statuses() == {"dead": 2},
        timeout=90,
        message=f"rows never became dead letters: {statuses()}",
    )
    for row in KnowledgeChunk.objects.all():
        assert row.embedding_attempts == 3
        assert [entry["attempt"] for entry in row.embedding_errors] == [1, 2, 3]
    source.refresh_from_db()
    assert source.status == "partial"
    assert not EmbeddingDue.objects.exists()


def test_the_same_task_delivered_twice_at_once_gives_one_result(
    start_cluster, vector_writes, broker_enqueue, openai_stub
):
    make_chunks(8)
    ids = set(KnowledgeChunk.objects.values_list("pk", flat=True))
    openai_stub.latency = 1.0  # both deliveries are in flight together
    task_id = broker_enqueue(RUN)
    original = OrmQ.objects.get()
    OrmQ.objects.create(key=original.key, payload=original.payload, lock=original.lock)
    start_cluster(timeout=20, workers=2)

    wait_until(
        lambda: not OrmQ.objects.exists() and all_done(),
        timeout=60,
        message=f"deliveries not processed: {statuses()}",
    )
    assert vector_writes() == dict.fromkeys(ids, 1)
    assert openai_stub.embedded_inputs == len(ids)  # the provider was asked once per row
    assert Task.objects.filter(id=task_id).count() == 1
    assert Task.objects.get(id=task_id).success


def test_sources_edited_or_deleted_while_embedding_end_with_their_latest_text(
    start_cluster, vector_writes, broker_enqueue, openai_stub
):
    edited = make_chunks(3, prefix="Edited")
    replaced = source_ingest_text(text="Old text about the E-21 error.", uri="kb://replaced").source
    deleted = make_chunks(3, prefix="Deleted")
    # Every batch is in the provider while we edit: the rows were queued by several ingests, so
    # the cluster may split them over its workers' embedder threads (2 workers x 2 threads), and
    # a batch answered at once would write the old text (or the soon-deleted rows) before the
    # edits. Each of those at most 4 calls takes a delay far longer than the edits take (the
    # lease keeper holds the claims meanwhile); a delay is known to be under way from the stub
    # having taken it, not from an open connection, which may be an idle keep-alive.
    in_flight_at_most = 4
    openai_stub.hang_next(12, count=in_flight_at_most)
    cluster = start_cluster(timeout=30, workers=2)
    broker_enqueue(RUN)
    wait_until(
        lambda: (
            openai_stub.pending_hangs < in_flight_at_most
            and cluster.worker_calling(openai_stub.port)
        ),
        timeout=30,
        message="no worker called the provider",
    )
    first = edited.chunks.order_by("ordinal").first()
    chunk_update(chunk=first, content="Brand new text: replace the strike plate.")
    source_ingest_text(text="New text about the E-22 error.", uri="kb://replaced")
    deleted_ids = list(deleted.chunks.values_list("pk", flat=True))
    source_delete(source=deleted)
    openai_stub.hangs_cancel()  # the calls after the edits need no delay

    wait_until(
        lambda: not OrmQ.objects.exists() and all_done(),
        timeout=60,
        message=f"rows not embedded: {statuses()}",
    )
    chunks = list(KnowledgeChunk.objects.all())
    assert len(chunks) == 4
    assert {c.content for c in chunks if c.source_id == replaced.pk} == {
        "New text about the E-22 error."
    }
    for chunk in chunks:
        assert chunk.embedding_text_hash == chunk.content_hash
        assert distance_to_stub_vector(chunk) < 0.01, chunk.content
    # No batch wrote back before the edits, so the old text's vector was never stored: the
    # write-back of the batch that held it saw the text changed and left the row to be embedded
    # again.
    assert vector_writes()[first.pk] == 1
    assert not set(vector_writes()) & set(deleted_ids)
    assert not EmbeddingDue.objects.exists()
    assert not KnowledgeSource.objects.filter(pk=deleted.pk).exists()
    assert set(KnowledgeSource.objects.values_list("status", flat=True)) == {"ready"}


def test_a_database_connection_killed_mid_task_is_recovered(
    start_cluster, vector_writes, broker_enqueue, openai_stub
):
    source = make_chunks(5)
    ids = set(source.chunks.values_list("pk", flat=True))
    openai_stub.hang_next(3)
    cluster = start_cluster(timeout=30)
    task_id = broker_enqueue(RUN)
    wait_until(
        lambda: cluster.worker_calling(openai_stub.port),
        timeout=30,
        message="no worker called the provider",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )
        assert cursor.fetchone()[0] >= 1

    wait_until(
        lambda: Task.objects.filter(id=task_id).exists(),
        timeout=60,
        message="the task did not finish",
    )
    # The same run wrote its vectors back on a new connection: nothing waits for a lease.
    assert all_done(), (statuses(), cluster.output())
    assert vector_writes() == dict.fromkeys(ids, 1)
    assert Task.objects.get(id=task_id).success
    # The cluster itself keeps working.
    more = make_chunks(2, prefix="More")
    broker_enqueue(RUN)
    wait_until(all_done, timeout=30, message="the cluster did not recover")
    assert more.chunks.filter(embedding_status="done").count() == 2


def test_two_clusters_embed_500_documents_exactly_once(
    start_cluster, vector_writes, broker_enqueue, openai_stub
):
    for n in range(500):
        source_ingest_text(text=f"Document {n}: the lock shows E-{n:03d}.", uri=f"kb://doc/{n}")
    ids = set(KnowledgeChunk.objects.values_list("pk", flat=True))
    assert len(ids) == 500
    openai_stub.latency = 0.05
    start_cluster(timeout=30, workers=2)
    start_cluster(timeout=30, workers=2)
    task_ids = [broker_enqueue(RUN) for _ in range(6)]

    wait_until(
        lambda: all_done() and Task.objects.filter(id__in=task_ids).count() == 6,
        timeout=90,
        message=f"not all embedded: {statuses()}",
    )
    assert vector_writes() == dict.fromkeys(ids, 1)
    # One attempt each and one provider call per row: no batch outlived its lease.
    assert set(KnowledgeChunk.objects.values_list("embedding_attempts", flat=True)) == {1}
    assert openai_stub.embedded_inputs == 500
    assert KnowledgeSource.objects.filter(status="ready").count() == 500
    assert not OrmQ.objects.exists() and not EmbeddingDue.objects.exists()


def test_a_session_archive_delivered_twice_at_once_archives_once(start_cluster, broker_enqueue):
    from sessions_app.models import ChatSession
    from tests.sessions_app.factories import make_session

    session = make_session(idle_minutes=120)
    task_id = broker_enqueue("sessions_app.tasks.session_archive", session.pk)
    original = OrmQ.objects.get()
    OrmQ.objects.create(key=original.key, payload=original.payload, lock=original.lock)
    start_cluster(timeout=20, workers=2)

    wait_until(
        lambda: not OrmQ.objects.exists() and Task.objects.filter(id=task_id).exists(),
        timeout=60,
        message="deliveries not processed",
    )
    sources = KnowledgeSource.objects.filter(uri=f"session://{session.pk}")
    assert sources.count() == 1
    contents = list(sources.get().chunks.values_list("content", flat=True))
    assert len(contents) == len(set(contents)) >= 1
    assert Task.objects.filter(id=task_id).count() == 1
    assert Task.objects.get(id=task_id).success
    session = ChatSession.objects.get(pk=session.pk)
    assert session.archived_through_id > 0
