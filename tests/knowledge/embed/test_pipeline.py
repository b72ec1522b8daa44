"""The embedding processor against real PostgreSQL transactions and the local OpenAI stub."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from knowledge.embed.pipeline import (
    ClaimedRow,
    dead_letters_retry,
    embedding_claim,
    embedding_process_batch,
    embedding_run,
    input_token_counts,
    pipeline_resume,
)
from knowledge.embed.providers import get_embedding_provider
from knowledge.models import EmbeddingPipelineState, KnowledgeChunk
from knowledge.tokens import get_token_counter
from tests.knowledge.factories import make_chunks

# Workers run in threads with their own connections, so the data must really be committed.
pytestmark = pytest.mark.django_db(transaction=True)

NO_SLEEP = lambda seconds: None  # noqa: E731


def statuses(source=None) -> dict[str, int]:
    rows = KnowledgeChunk.objects.all() if source is None else source.chunks.all()
    result: dict[str, int] = {}
    for status in rows.values_list("embedding_status", flat=True):
        result[status] = result.get(status, 0) + 1
    return result


@pytest.fixture(autouse=True)
def _running_pipeline():
    pipeline_resume()
    yield


def test_offline_the_local_provider_embeds_everything_and_sources_become_ready(settings):
    settings.OPENAI_API_KEY = ""
    source = make_chunks(12)
    report = embedding_run(concurrency=2)
    assert report.totals.embedded == 12
    assert statuses() == {"done": 12}
    chunk = source.chunks.first()
    assert chunk.embedding_model == get_embedding_provider().model == "local-hash-v1"
    assert chunk.embedding_text_hash == chunk.content_hash and chunk.embedding_attempts == 1
    source.refresh_from_db()
    assert source.status == "ready"


def test_online_batches_respect_the_input_limit(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MAX_INPUTS = 5
    make_chunks(12)
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.embedded == 12
    sizes = [len(r["json"]["input"]) for r in openai_stub.requests_for("/embeddings")]
    assert sizes == [5, 5, 2]
    assert KnowledgeChunk.objects.first().embedding_model == settings.KIOKU_EMBEDDING_MODEL


def test_429_with_retry_after_is_retried(openai_stub):
    make_chunks(3)
    openai_stub.fail_next(429, retry_after=0.2)
    waits = []
    report = embedding_process_batch(sleep=waits.append)
    assert report.embedded == 3 and report.retries == 1
    assert waits and waits[0] >= 0.2
    assert statuses() == {"done": 3}


def test_500_then_success(openai_stub):
    make_chunks(4)
    openai_stub.fail_next(500)
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.embedded == 4 and report.retries == 1


def test_a_timeout_is_retried(openai_stub, settings):
    settings.KIOKU_EMBEDDING_TIMEOUT_SECONDS = 1
    make_chunks(2)
    openai_stub.hang_next(3)
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.embedded == 2 and report.retries >= 1


def test_a_poisoned_input_fails_alone(openai_stub):
    source = make_chunks(6)
    poisoned = source.chunks.order_by("ordinal")[2]
    openai_stub.poison = {poisoned.content}
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert (report.embedded, report.failed, report.dead) == (5, 1, 0)
    poisoned.refresh_from_db()
    assert poisoned.embedding_status == "pending" and poisoned.embedding_attempts == 1
    assert poisoned.embedding_last_error and len(poisoned.embedding_errors) == 1
    assert poisoned.embedding_next_attempt_at > timezone.now()  # backed off


def test_after_max_attempts_a_row_is_a_dead_letter_and_can_be_retried(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MAX_ATTEMPTS = 3
    source = make_chunks(3)
    poisoned = source.chunks.order_by("ordinal")[0]
    openai_stub.poison = {poisoned.content}
    for _ in range(3):
        KnowledgeChunk.objects.update(embedding_next_attempt_at=timezone.now())
        embedding_process_batch(sleep=NO_SLEEP)
    poisoned.refresh_from_db()
    assert poisoned.embedding_status == "dead"
    assert [entry["attempt"] for entry in poisoned.embedding_errors] == [1, 2, 3]
    source.refresh_from_db()
    assert source.status == "partial"
    assert embedding_process_batch(sleep=NO_SLEEP).claimed == 0  # dead letters are not claimed

    openai_stub.poison = set()
    assert dead_letters_retry() == 1
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.embedded == 1
    poisoned.refresh_from_db()
    assert (
        poisoned.embedding_status == "done" and len(poisoned.embedding_errors) == 3
    )  # history kept


def test_text_edited_while_in_flight_is_not_overwritten_by_the_stale_vector(settings):
    settings.OPENAI_API_KEY = ""
    source = make_chunks(3)
    target = source.chunks.order_by("ordinal").first()
    real = get_embedding_provider()

    class EditingProvider:
        """The real local provider, but a curator edits the chunk during the API call."""

        name, model, dimensions, is_offline, limits = (
            real.name,
            real.model,
            real.dimensions,
            True,
            real.limits,
        )

        def embed(self, texts):
            from knowledge.services import chunk_update

            chunk_update(
                chunk=KnowledgeChunk.objects.get(pk=target.pk), content="Edited meanwhile."
            )
            return real.embed(texts)

    report = embedding_process_batch(provider=EditingProvider())
    assert (report.embedded, report.stale) == (2, 1)
    target.refresh_from_db()
    assert target.content == "Edited meanwhile." and target.embedding is None
    assert target.embedding_status == "pending" and target.embedding_claimed_until is None
    assert target.embedding_attempts == 0  # a stale result does not burn an attempt
    assert embedding_process_batch().embedded == 1
    target.refresh_from_db()
    assert target.embedding_text_hash == target.content_hash


def test_a_worker_killed_mid_batch_loses_nothing_and_writes_nothing_late(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBEDDING_BACKOFF_SECONDS = 0  # the lost attempt is retried at once
    make_chunks(4)
    rows, dead_lease = embedding_claim(model=KnowledgeChunk, limit=10, lease_seconds=1)
    assert len(rows) == 4
    # The worker dies here. Until the lease expires nobody else takes the rows…
    assert embedding_process_batch().claimed == 0
    time.sleep(1.6)
    report = embedding_process_batch()
    assert report.embedded == 4
    assert set(KnowledgeChunk.objects.values_list("embedding_attempts", flat=True)) == {2}
    assert {
        len(errors) for errors in KnowledgeChunk.objects.values_list("embedding_errors", flat=True)
    } == {1}  # the lost attempt stays on record
    # …and if the "dead" worker wakes up and writes back, its lease no longer matches.
    from knowledge.embed.pipeline import _write_back
    from knowledge.embed.spaces import space_state

    vectors = {
        i: [1.0] + [0.0] * (settings.KIOKU_EMBEDDING_DIMENSIONS - 1) for i in range(len(rows))
    }
    before = set(KnowledgeChunk.objects.values_list("id", "embedded_at"))
    assert _write_back(KnowledgeChunk, rows, dead_lease, vectors, space_state().writing) == (0, 0)
    assert set(KnowledgeChunk.objects.values_list("id", "embedded_at")) == before


def test_two_workers_claim_disjoint_rows():
    make_chunks(40)
    results: list[set[int]] = []
    barrier = threading.Barrier(2)

    def claim():
        try:
            barrier.wait()
            rows, _ = embedding_claim(model=KnowledgeChunk, limit=25, lease_seconds=60)
            results.append({row.pk for row in rows})
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = results
    assert not first & second
    assert len(first | second) == 40


def test_two_runs_in_parallel_embed_every_row_exactly_once(openai_stub):
    make_chunks(30)
    openai_stub.latency = 0.05
    reports = []

    def run():
        reports.append(embedding_run(concurrency=2, max_seconds=60))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.totals.embedded for r in reports) == 30
    assert openai_stub.embedded_inputs == 30
    assert statuses() == {"done": 30}


def test_insufficient_quota_pauses_the_pipeline_without_burning_attempts(openai_stub):
    make_chunks(3)
    openai_stub.fail_next(429, code="insufficient_quota")
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.paused == "blocked: quota"
    state = EmbeddingPipelineState.load()
    assert state.is_paused() and state.paused_reason == "blocked: quota"
    assert set(KnowledgeChunk.objects.values_list("embedding_status", "embedding_attempts")) == {
        ("pending", 0)
    }
    requests_before = len(openai_stub.requests)
    assert embedding_process_batch(sleep=NO_SLEEP).claimed == 0
    assert len(openai_stub.requests) == requests_before  # paused: no calls at all
    pipeline_resume()
    assert embedding_process_batch(sleep=NO_SLEEP).embedded == 3


def test_a_long_retry_after_reschedules_the_rows(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MAX_RETRY_WAIT_SECONDS = 5
    make_chunks(2)
    openai_stub.fail_next(429, retry_after=120)
    report = embedding_process_batch(sleep=NO_SLEEP)
    assert report.rescheduled == 2 and report.embedded == 0
    for chunk in KnowledgeChunk.objects.all():
        assert chunk.embedding_attempts == 0
        assert chunk.embedding_next_attempt_at > timezone.now() + timedelta(seconds=100)


def test_ingestion_enqueues_an_embedding_run_through_django_q(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBED_ON_WRITE = True
    source = make_chunks(3)  # commits → on_commit → async_task, run inline (sync mode in tests)
    assert statuses(source) == {"done": 3}


def test_requests_are_packed_by_the_stored_token_counts(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MAX_REQUEST_TOKENS = 1000  # 800 after the 0.8 margin
    source = make_chunks(6)
    counter = get_token_counter()
    assert set(source.chunks.values_list("token_counter", flat=True)) == {counter.name}
    # Counted by the counter in use: trusted as stored (here inflated), not counted again.
    source.chunks.update(token_count=400)

    embedding_process_batch(sleep=NO_SLEEP)

    sizes = [len(r["json"]["input"]) for r in openai_stub.requests_for("/embeddings")]
    assert sizes == [2, 2, 2]


def test_counts_by_another_counter_are_counted_again(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MAX_REQUEST_TOKENS = 1000
    source = make_chunks(6)
    source.chunks.update(token_count=400, token_counter="some_other_encoding")

    embedding_process_batch(sleep=NO_SLEEP)

    sizes = [len(r["json"]["input"]) for r in openai_stub.requests_for("/embeddings")]
    assert sizes == [6]  # each is ~15 tokens really


def test_a_text_cut_to_fit_is_counted_again():
    counter = get_token_counter()
    row = ClaimedRow(1, "word " * 50, "hash", 1, token_count=5, token_counter=counter.name)

    same, cut = input_token_counts([row, row], [row.text, "word " * 10], counter)

    assert same == 5 and cut == counter.count("word " * 10)


def test_a_batch_slower_than_its_lease_keeps_its_rows_and_writes_them_back(openai_stub, settings):
    settings.KIOKU_EMBEDDING_LEASE_SECONDS = 1
    make_chunks(3)
    openai_stub.latency = 2.5  # the provider answers after the first lease would have ended
    reports = []

    def slow_worker():
        try:
            reports.append(embedding_process_batch(sleep=NO_SLEEP))
        finally:
            connection.close()

    worker = threading.Thread(target=slow_worker)
    worker.start()
    time.sleep(1.8)
    taken, _ = embedding_claim(model=KnowledgeChunk, limit=10, lease_seconds=60)
    worker.join()
    assert taken == []  # the lease was renewed: nobody else took the rows
    assert reports[0].embedded == 3
    assert statuses() == {"done": 3}
    assert set(KnowledgeChunk.objects.values_list("embedding_attempts", flat=True)) == {1}
    assert not any(KnowledgeChunk.objects.values_list("embedding_errors", flat=True))
    assert openai_stub.embedded_inputs == 3
