"""The vector index services (knowledge/embed/vector_index.py) and the status read (queries.index_status)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from knowledge.embed.vector_index import analyze_after_bulk_load, index_clear, index_rebuild
from knowledge.models import (
    EmbeddingPipelineState,
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
)
from knowledge.queries import current_embedding_model, index_status
from tests.knowledge.factories import FAQ_MD, fake_embed, make_source

pytestmark = pytest.mark.django_db

PUMP_TXT = "The P-200 pump must be primed before the first start. Fill the casing with water."


def embed_with_current_model(source: KnowledgeSource) -> None:
    fake_embed(source)
    source.chunks.update(embedding_model=current_embedding_model())


def vectors_by_hash(source: KnowledgeSource) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT content_hash, embedding::text FROM knowledge_knowledgechunk"
            " WHERE source_id = %s AND embedding IS NOT NULL",
            [source.pk],
        )
        return dict(cursor.fetchall())


@pytest.fixture
def library() -> dict[str, KnowledgeSource]:
    """A manual embedded with the current model, an FAQ embedded by another model, and a pump
    note still waiting, one of whose chunks is a dead letter."""
    manual = make_source(uri="kb://manual")
    embed_with_current_model(manual)
    faq = make_source(text=FAQ_MD, title="Door lock FAQ", source_type="faq", uri="kb://faq")
    fake_embed(faq)  # model "test-model": not the current one
    pump = make_source(text=PUMP_TXT, title="P-200 note", text_format="text", uri="kb://pump")
    pump.chunks.update(embedding_status=EmbeddingStatus.DEAD, embedding_attempts=5)
    return {"manual": manual, "faq": faq, "pump": pump}


# --- index_status -----------------------------------------------------------------------------


def test_status_counts_sources_chunks_and_embedding_states(library):
    manual, faq, pump = library["manual"].chunks.count(), library["faq"].chunks.count(), 1
    assert library["pump"].chunks.count() == pump

    status = index_status()

    assert status["sources"]["total"] == 3
    assert sum(status["sources"]["by_status"].values()) == 3
    assert status["chunks"] == {
        "total": manual + faq + pump,
        "enabled": manual + faq + pump,
        "enabled_embedded": manual,
    }
    assert status["embedded"] == manual
    assert status["pending"] == 0
    assert status["dead_letters"] == 1
    assert status["available"] is True
    assert status["throughput_last_hour"] == {
        "chunks": manual + faq,
        "per_minute": round((manual + faq) / 60, 1),
    }
    assert status["progress"] == pytest.approx(int(1000 * manual / (manual + faq + pump)) / 10)
    assert status["last_updated"] == KnowledgeSource.objects.latest("fetched_at").fetched_at
    assert status["warning"] is None


def test_status_counts_vectors_of_another_model_separately(library):
    status = index_status()
    assert status["embedded_other_model"] == library["faq"].chunks.count()
    assert status["embedded"] == library["manual"].chunks.count()
    assert status["model"] == current_embedding_model() != "test-model"


def test_status_names_the_offline_model_without_an_api_key(settings):
    settings.OPENAI_API_KEY = ""
    status = index_status()
    assert status["offline"] is True
    assert status["model"] == current_embedding_model()
    assert status["dimensions"] == settings.KIOKU_EMBEDDING_DIMENSIONS


def test_current_model_is_the_configured_one_until_a_vector_is_written(settings):
    settings.OPENAI_API_KEY = ""
    assert current_embedding_model() == "local-hash-v1"
    settings.OPENAI_API_KEY = "sk-test"
    settings.KIOKU_EMBEDDING_MODEL = "text-embedding-3-large"
    assert current_embedding_model() == "text-embedding-3-large"
    assert index_status()["model"] == "text-embedding-3-large"


def test_status_progress_leaves_out_disabled_chunks(library):
    library["pump"].chunks.update(enabled=False)
    KnowledgeSource.objects.filter(pk=library["faq"].pk).update(enabled=False)
    status = index_status()
    assert status["chunks"]["enabled"] == library["manual"].chunks.count()
    assert status["progress"] == 100.0


def test_status_progress_leaves_out_expired_chunks(library):
    # An expired chunk is no more usable by search than a disabled one (issue 14: index status
    # counted expired chunks as usable).
    library["pump"].chunks.update(valid_until=timezone.now() - timedelta(minutes=1))
    KnowledgeSource.objects.filter(pk=library["faq"].pk).update(enabled=False)
    status = index_status()
    assert status["chunks"]["enabled"] == library["manual"].chunks.count()
    assert status["progress"] == 100.0


def test_status_warns_past_the_row_alert(library, settings):
    settings.KIOKU_INDEX_ROW_ALERT = 1
    status = index_status()
    assert status["row_alert"] == 1
    assert f"holds {status['chunks']['total']:,} chunks" in status["warning"]
    assert "KIOKU_INDEX_ROW_ALERT" in status["warning"]


def test_status_does_not_warn_at_the_row_alert(library, settings):
    settings.KIOKU_INDEX_ROW_ALERT = KnowledgeChunk.objects.count()
    assert index_status()["warning"] is None


def test_status_of_an_empty_index_is_not_available():
    status = index_status()
    assert status["available"] is False
    assert status["chunks"]["total"] == 0
    assert status["progress"] == 0.0
    assert status["last_updated"] is None
    assert status["pipeline"]["state"] == "running"


def test_status_is_not_available_when_only_another_model_embedded():
    fake_embed(make_source())
    assert index_status()["available"] is False


def test_status_shows_the_pipeline_blocked_by_quota():
    until = timezone.now() + timedelta(minutes=15)
    EmbeddingPipelineState.objects.create(id=1, paused_until=until, paused_reason="quota")
    pipeline = index_status()["pipeline"]
    assert pipeline == {
        "paused": True,
        "reason": "quota",
        "paused_until": until,
        "state": "blocked: quota",
    }


def test_status_ignores_a_pause_that_has_ended():
    EmbeddingPipelineState.objects.create(
        id=1, paused_until=timezone.now() - timedelta(seconds=1), paused_reason="quota"
    )
    assert index_status()["pipeline"]["paused"] is False


def test_status_reading_does_not_create_the_pipeline_row():
    index_status()
    assert not EmbeddingPipelineState.objects.exists()


def test_status_reports_table_and_index_sizes(library):
    sizes = index_status()["sizes"]
    assert set(sizes) == {"table", "hnsw_index", "gin_index"}
    assert all(size["bytes"] > 0 and size["pretty"] for size in sizes.values())
    assert sizes["table"]["bytes"] > sizes["gin_index"]["bytes"]


# --- index_rebuild ----------------------------------------------------------------------------


def test_rebuild_returns_documents_and_entries(library):
    result = index_rebuild()
    assert result.total_documents == 3
    assert result.total_entries == KnowledgeChunk.objects.count()
    assert result.duration_ms >= 0


def test_rebuild_keeps_the_vectors_of_unchanged_chunks(library):
    manual = library["manual"]
    before = vectors_by_hash(manual)
    result = index_rebuild()
    assert vectors_by_hash(manual) == before
    assert set(manual.chunks.values_list("embedding_status", flat=True)) == {"done"}
    assert result.embeddings_kept == len(before)


def test_rebuild_queues_chunks_without_a_current_vector(library):
    result = index_rebuild()
    faq, pump = library["faq"], library["pump"]
    owed = faq.chunks.count() + pump.chunks.count()
    assert result.queued == owed
    assert KnowledgeChunk.objects.filter(embedding_status="pending").count() == owed
    # Vectors of a model the index does not hold are dropped: search never reads them.
    assert not faq.chunks.filter(embedding__isnull=False).exists()
    assert index_status()["dead_letters"] == 0


def test_rebuild_keeps_what_curators_set_on_chunks(library):
    manual = library["manual"]
    disabled, pinned = manual.chunks.order_by("ordinal")[:2]
    until = timezone.now() + timedelta(days=30)
    KnowledgeChunk.objects.filter(pk=disabled.pk).update(enabled=False, valid_until=until)
    KnowledgeChunk.objects.filter(pk=pinned.pk).update(pinned=True)

    index_rebuild()

    assert manual.chunks.get(content_hash=disabled.content_hash).enabled is False
    assert manual.chunks.get(content_hash=disabled.content_hash).valid_until == until
    assert manual.chunks.get(content_hash=pinned.content_hash).pinned is True
    assert manual.chunks.filter(enabled=True, pinned=False).count() == manual.chunks.count() - 2


def test_rebuild_leaves_disabled_and_failed_sources_alone(library):
    KnowledgeSource.objects.filter(pk=library["faq"].pk).update(enabled=False)
    KnowledgeSource.objects.filter(pk=library["pump"].pk).update(status=SourceStatus.FAILED)
    faq_ids = set(library["faq"].chunks.values_list("pk", flat=True))

    result = index_rebuild()

    assert result.total_documents == 1
    assert set(library["faq"].chunks.values_list("pk", flat=True)) == faq_ids
    assert library["pump"].chunks.get().embedding_status == EmbeddingStatus.DEAD


def test_rebuild_of_an_empty_knowledge_base_does_nothing():
    result = index_rebuild()
    assert (result.total_documents, result.total_entries, result.queued) == (0, 0, 0)


# --- index_clear ------------------------------------------------------------------------------


def test_clear_drops_every_vector_but_keeps_the_chunks(library):
    contents = set(KnowledgeChunk.objects.values_list("pk", "content"))
    cleared = index_clear()

    assert cleared == len(contents)
    assert set(KnowledgeChunk.objects.values_list("pk", "content")) == contents
    assert not KnowledgeChunk.objects.filter(embedding__isnull=False).exists()
    assert set(
        KnowledgeChunk.objects.values_list(
            "embedding_status", "embedding_model", "embedding_attempts", "embedded_at"
        )
    ) == {("pending", "", 0, None)}
    assert set(KnowledgeSource.objects.values_list("status", flat=True)) == {"pending"}
    status = index_status()
    assert (status["available"], status["embedded"], status["pending"]) == (False, 0, len(contents))


def test_clear_twice_clears_nothing_the_second_time(library):
    index_clear()
    assert index_clear() == 0


def test_clear_keeps_curator_flags(library):
    chunk = library["manual"].chunks.first()
    KnowledgeChunk.objects.filter(pk=chunk.pk).update(enabled=False, pinned=True)
    index_clear()
    chunk.refresh_from_db()
    assert (chunk.enabled, chunk.pinned) == (False, True)


# --- analyze_after_bulk_load ------------------------------------------------------------------


def test_analyze_refreshes_the_planner_row_estimate(library):
    analyze_after_bulk_load()
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'knowledge_knowledgechunk'")
        (estimate,) = cursor.fetchone()
    assert estimate == KnowledgeChunk.objects.count()


def test_maintenance_analyzes_after_bulk_changes():
    from knowledge.embed.vector_index import analyze_if_bulk_loaded

    make_source()
    assert analyze_if_bulk_loaded(min_changed_rows=0) is True
