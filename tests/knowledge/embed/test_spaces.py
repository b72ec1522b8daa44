"""Switching the embedding model and size without downtime (knowledge/embed/spaces.py),
against real PostgreSQL and the OpenAI stub: model A is the offline local model at the default
size, model B the stub's text-embedding-3-small at 256 dimensions."""

import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from knowledge.embed.pipeline import embedding_claim, embedding_process_batch, embedding_run
from knowledge.embed.spaces import (
    active_vector_index_names,
    embedding_switch_start,
    halfvec_literal,
    space_record,
    space_state,
    vector_indexes,
)
from knowledge.ingest.chunk_copy import chunk_indexes_deferred
from knowledge.models import EmbeddingSpaceState, KnowledgeChunk
from knowledge.queries import index_status
from knowledge.search.service import chunk_search
from tests.knowledge.factories import make_chunks
from tests.knowledge.search.sql_plans import captured_sql, explain_plan

pytestmark = pytest.mark.django_db(transaction=True)

NO_SLEEP = lambda seconds: None  # noqa: E731
MODEL_A = "local-hash-v1"
MODEL_B = "text-embedding-3-small"


@pytest.fixture(autouse=True)
def _clean(vector_indexes_restored):
    from knowledge.embed.pipeline import pipeline_resume

    pipeline_resume()


@pytest.fixture
def library(settings):
    """Twelve chunks embedded with model A."""
    settings.OPENAI_API_KEY = ""
    source = make_chunks(12)
    embedding_run()
    return source


def configure_b(settings, stub) -> None:
    settings.OPENAI_API_KEY = stub.api_key
    settings.OPENAI_BASE_URL = stub.base_url
    settings.KIOKU_EMBEDDING_MODEL = MODEL_B
    settings.KIOKU_EMBEDDING_DIMENSIONS = 256


def vector_hits(query: str = "lock battery") -> tuple[str, set[int]]:
    result = chunk_search(query, mode="vector", top_k=100)
    return result.model, {hit.chunk_id for hit in result.hits}


def all_ids() -> set[int]:
    return set(KnowledgeChunk.objects.values_list("id", flat=True))


def slot_models(slot_model_column: str) -> set[str]:
    return set(KnowledgeChunk.objects.values_list(slot_model_column, flat=True))


def test_the_first_vector_written_records_the_configured_space(settings):
    settings.OPENAI_API_KEY = ""
    assert not EmbeddingSpaceState.objects.exists()
    make_chunks(2)
    embedding_run()
    state = space_state()
    assert state.is_recorded and (state.active.model, state.active.slot) == (MODEL_A, 1)
    assert state.active.dimensions == settings.KIOKU_EMBEDDING_DIMENSIONS


def test_the_first_space_recorded_in_a_transaction_that_wrote_rows_gets_its_index(settings):
    # A demo load in a new database resolves cards and records the space on their first vector,
    # all in one transaction: rows with deferred foreign-key checks pending, which PostgreSQL
    # does not index over unless the checks run first.
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBEDDING_DIMENSIONS = 256
    with transaction.atomic():
        make_chunks(2)
        state = space_record()
    assert (state.active.model, state.active.dimensions) == (MODEL_A, 256)
    assert vector_indexes(KnowledgeChunk) == {"chunk_embedding_hnsw_256": True}


def test_changed_settings_alone_keep_search_and_embedding_in_the_active_space(
    library, openai_stub, settings
):
    configure_b(settings, openai_stub)
    space = index_status()["space"]
    assert space["switch_needed"] is True and space["switch"] is None
    assert space["configured"] == {"model": MODEL_B, "dimensions": 256}
    assert vector_hits() == (MODEL_A, all_ids())
    late = make_chunks(2, prefix="Late")
    embedding_run()
    assert set(late.chunks.values_list("embedding_model", flat=True)) == {MODEL_A}
    assert openai_stub.requests_for("/embeddings") == []


def test_a_switch_to_another_model_and_size_never_loses_or_mixes_rows(
    library, openai_stub, settings
):
    configure_b(settings, openai_stub)
    report = embedding_switch_start()
    assert (report.outcome, report.queued) == ("started", 12)
    assert set(vector_indexes(KnowledgeChunk)) == {
        "chunk_embedding_hnsw_1536",
        "chunk_embedding_alt_hnsw_256",
    }

    assert embedding_process_batch(limit=5, sleep=NO_SLEEP).embedded == 5
    # Halfway: search still reads every row's model-A vector, and only those.
    assert vector_hits() == (MODEL_A, all_ids())
    switch = index_status()["space"]["switch"]
    assert (switch["model"], switch["embedded"], switch["total"]) == (MODEL_B, 5, 12)
    assert slot_models("embedding_model") == {MODEL_A}
    assert slot_models("embedding_alt_model") == {MODEL_B, ""}

    embedding_run()  # the rest, then the cutover and the clearing of slot 1
    state = space_state()
    assert (state.active.model, state.active.dimensions, state.active.slot) == (MODEL_B, 256, 2)
    assert state.target is None and state.retired is None
    assert vector_hits() == (MODEL_B, all_ids())
    assert openai_stub.requests_for("/embeddings")[-1]["json"]["dimensions"] == 256
    assert not KnowledgeChunk.objects.filter(embedding__isnull=False).exists()
    assert slot_models("embedding_model") == {""} and slot_models("embedding_alt_model") == {
        MODEL_B
    }
    assert set(vector_indexes(KnowledgeChunk)) == {"chunk_embedding_alt_hnsw_256"}
    status = index_status()
    assert (status["model"], status["dimensions"], status["progress"]) == (MODEL_B, 256, 100.0)
    assert status["space"]["switch_needed"] is False


def test_a_search_learns_of_a_cutover_from_its_own_round_trip(library, openai_stub, settings):
    # Each process keeps the active space it last saw; search checks it in the same round trip.
    assert chunk_search("battery", mode="vector").model == MODEL_A
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_run()  # the cutover, as another process would make it
    statements = captured_sql(lambda: chunk_search("battery", mode="vector"))
    sent = [sql for sql, _ in statements if "<=>" in sql]
    assert len(sent) == 2  # planned for the space last seen, then again for the new one
    assert "(c.embedding::halfvec(" in sent[0] and "embedding_alt::halfvec(256)" in sent[1]
    assert vector_hits() == (MODEL_B, all_ids())
    statements = captured_sql(lambda: chunk_search("battery", mode="vector"))
    assert len(statements) == 1  # the space check travels with the query


def test_after_the_switch_the_vector_query_uses_the_new_slots_index(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_run()
    statements = captured_sql(lambda: chunk_search("battery", mode="vector"))
    sql, params = [(s, p) for s, p in statements if "<=>" in s][-1]
    assert "embedding_alt::halfvec(256)" in sql
    plan = explain_plan(sql, params, needle="<=>", disable=("enable_sort",))
    assert "Index Scan using chunk_embedding_alt_hnsw_256 " in plan


def test_a_worker_dying_mid_switch_delays_the_cutover_and_loses_nothing(
    library, openai_stub, settings
):
    configure_b(settings, openai_stub)
    settings.KIOKU_EMBEDDING_BACKOFF_SECONDS = 0  # the lost attempt is retried at once
    embedding_switch_start()
    rows, _ = embedding_claim(model=KnowledgeChunk, limit=3, lease_seconds=1)
    assert len(rows) == 3  # …and the worker holding them dies
    embedding_run()
    assert space_state().active.model == MODEL_A  # three rows are still owed
    assert vector_hits() == (MODEL_A, all_ids())
    time.sleep(1.2)
    embedding_run()
    assert space_state().active.model == MODEL_B
    assert vector_hits() == (MODEL_B, all_ids())


def test_reembed_again_while_switching_changes_nothing(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_process_batch(limit=4, sleep=NO_SLEEP)
    again = embedding_switch_start()
    assert (again.outcome, again.queued) == ("switching", 0)
    assert KnowledgeChunk.objects.filter(embedding_alt_model=MODEL_B).count() == 4
    assert KnowledgeChunk.objects.filter(embedding_status="pending").count() == 8


def test_an_interrupted_start_is_finished_by_running_it_again(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    # As if the command died after recording the target, before queueing every row.
    EmbeddingSpaceState.objects.update(switch_queued_at=None)
    KnowledgeChunk.objects.update(embedding_status="done")
    embedding_run()
    assert space_state().active.model == MODEL_A  # never cut over to an empty slot
    assert embedding_switch_start().queued == 12
    embedding_run()
    assert vector_hits() == (MODEL_B, all_ids())


def test_text_ingested_during_a_switch_is_found_by_keyword_now_and_by_meaning_after(
    library, openai_stub, settings
):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    late = make_chunks(1, prefix="Waterproof")
    late_ids = set(late.chunks.values_list("id", flat=True))
    embedding_process_batch(limit=100, sleep=NO_SLEEP)
    keyword = chunk_search("Waterproof", mode="keyword")
    assert {hit.chunk_id for hit in keyword.hits} == late_ids
    model, ids = vector_hits()
    assert model == MODEL_A and late_ids.isdisjoint(ids)  # no model-A vector was made for it
    embedding_run()
    model, ids = vector_hits("Waterproof lock battery")
    assert model == MODEL_B and late_ids <= ids


def test_dead_letters_do_not_block_the_cutover_and_are_reported(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    settings.KIOKU_EMBEDDING_MAX_ATTEMPTS = 1
    poisoned = library.chunks.order_by("ordinal")[3]
    openai_stub.poison = {poisoned.content}
    embedding_switch_start()
    embedding_process_batch(limit=100, sleep=NO_SLEEP)
    poisoned.refresh_from_db()
    assert poisoned.embedding_status == "dead"
    report = embedding_switch_start()  # nothing pending: completes now
    assert report.outcome == "completed"
    assert "1 dead letter(s) have no text-embedding-3-small vector" in report.message
    model, ids = vector_hits()
    assert model == MODEL_B and ids == all_ids() - {poisoned.pk}
    assert index_status()["dead_letters"] == 1


def test_settings_back_to_the_active_model_cancel_the_switch(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_process_batch(limit=5, sleep=NO_SLEEP)
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBEDDING_DIMENSIONS = 1536
    report = embedding_switch_start()
    assert report.outcome == "current" and "cancelled" in report.message
    state = space_state()
    assert state.target is None and state.retired is None and state.active.model == MODEL_A
    assert slot_models("embedding_alt_model") == {""}
    assert set(KnowledgeChunk.objects.values_list("embedding_status", flat=True)) == {"done"}
    assert set(vector_indexes(KnowledgeChunk)) == {"chunk_embedding_hnsw_1536"}


def test_a_write_back_for_a_space_no_longer_filled_is_released(library, openai_stub, settings):
    from knowledge.embed.pipeline import _write_back

    configure_b(settings, openai_stub)
    embedding_switch_start()
    rows, lease = embedding_claim(model=KnowledgeChunk, limit=2, lease_seconds=60)
    stale_space = space_state().active  # e.g. a worker that started before the switch
    vectors = {i: [1.0] + [0.0] * 1535 for i in range(len(rows))}
    assert _write_back(KnowledgeChunk, rows, lease, vectors, stale_space) == (0, 2)
    claimed = KnowledgeChunk.objects.filter(pk__in=[row.pk for row in rows])
    assert set(claimed.values_list("embedding_claimed_until", "embedding_attempts")) == {(None, 0)}


def test_the_cutover_takes_no_lock_on_the_chunk_table(library, openai_stub, settings):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_process_batch(limit=100, sleep=NO_SLEEP)
    statements = captured_sql(lambda: embedding_run())
    cutover = [s for s, _ in statements if "UPDATE" in s and "embeddingspacestate" in s]
    assert cutover  # the flip is an update of the one state row…
    assert not any("LOCK TABLE" in s or "ALTER TABLE" in s for s, _ in statements)
    assert space_state().switched_at <= timezone.now()


def test_the_switch_api_needs_the_admin_scope_and_reports(api, api_as, library, settings):
    settings.KIOKU_EMBEDDING_DIMENSIONS = 64
    assert api_as("read").post("/api/v1/index/switch").status_code in (401, 403)
    response = api.post("/api/v1/index/switch")
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "started" and body["queued"] == 12
    assert body["target"] == "local-hash-v1 (64 dimensions)"
    status = api.get("/api/v1/index/status").json()["space"]
    assert status["switch"]["dimensions"] == 64 and status["switch"]["embedded"] == 0
    assert status["active"]["index"] == "chunk_embedding_hnsw_1536"


def test_the_dashboard_shows_a_needed_switch_and_its_progress(client, make_user, library, settings):
    client.force_login(make_user("staff", "curator", is_staff=True))
    settings.KIOKU_EMBEDDING_DIMENSIONS = 64
    page = client.get("/knowledge/index/").content.decode()
    assert "Switch to local-hash-v1" in page and "the index holds" in page
    embedding_switch_start()
    embedding_process_batch(limit=3, sleep=NO_SLEEP)
    page = client.get("/knowledge/index/", headers={"HX-Request": "true"}).content.decode()
    assert "Switching to <code>local-hash-v1</code>" in page
    assert "3 of 12 usable chunks embedded" in page


def test_index_creation_uses_the_same_cast_as_the_query(library, settings):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_1536'"
        )
        (definition,) = cursor.fetchone()
    assert "(embedding)::halfvec(1536)" in definition and "halfvec_cosine_ops" in definition
    graph = f"m='{settings.KIOKU_HNSW_M}', ef_construction='{settings.KIOKU_HNSW_EF_CONSTRUCTION}'"
    assert graph in definition


def test_a_switch_that_changes_course_ends_in_the_last_configured_space(
    library, openai_stub, settings
):
    configure_b(settings, openai_stub)
    embedding_switch_start()
    embedding_process_batch(limit=5, sleep=NO_SLEEP)
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBEDDING_DIMENSIONS = 64
    report = embedding_switch_start()
    assert (report.outcome, report.queued) == ("started", 12)
    assert slot_models("embedding_alt_model") == {""}  # the 256-d vectors are gone
    embedding_run()
    state = space_state()
    assert (state.active.model, state.active.dimensions, state.active.slot) == (MODEL_A, 64, 2)
    assert vector_hits() == (MODEL_A, all_ids())
    assert set(vector_indexes(KnowledgeChunk)) == {"chunk_embedding_alt_hnsw_64"}


def test_index_builds_use_parallel_workers_and_leave_the_session_as_it_was(library, settings):
    settings.KIOKU_INDEX_BUILD_WORKERS = 1
    build_settings = [
        "maintenance_work_mem",
        "max_parallel_maintenance_workers",
        "min_parallel_table_scan_size",
    ]

    def current() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting(name) FROM unnest(%s::text[]) AS name", [build_settings]
            )
            return [value for (value,) in cursor.fetchall()]

    before = current()
    connection.ensure_connection()
    notices: list[str] = []
    connection.connection.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    with connection.cursor() as cursor:
        cursor.execute("SET client_min_messages = debug1")
    try:
        # Twelve chunks: far below the table size at which PostgreSQL would add a worker itself.
        with chunk_indexes_deferred(active_vector_index_names()):
            pass
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET client_min_messages")

    assert "using 1 parallel workers" in notices
    assert current() == before


@pytest.mark.django_db
def test_a_query_vectors_literal_casts_to_the_half_floats_of_its_values():
    vector = [0.1, -0.25, 1e-05, 123.456, 0.0, 3.0]
    literal = halfvec_literal(vector)
    assert literal == "[0.1,-0.25,1e-05,123.456,0,3]"
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::halfvec(6)::text = %s::halfvec(6)::text", [literal, str(vector)])
        assert cursor.fetchone() == (True,)
        cursor.execute("SELECT %s::halfvec::text", [halfvec_literal([0.5] * 1536)])
        assert cursor.fetchone()[0] == "[" + ",".join(["0.5"] * 1536) + "]"
