"""Bulk writes of chunks by COPY (knowledge/ingest/chunk_copy.py): chunks that arrive with their
vectors (imports, benchmarks) land in the slot of their space, with the bookkeeping of a row that
owes nothing, or owes a target vector while a switch runs."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from knowledge.embed.spaces import configured_space
from knowledge.ingest.chunk_copy import ChunkRow, chunks_with_vectors_copy
from knowledge.models import EmbeddingSpaceState, EmbeddingStatus, KnowledgeChunk, KnowledgeSource

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""


def source() -> KnowledgeSource:
    return KnowledgeSource.objects.create(source_type="manual", title="Imported", uri="kb://import")


def rows(source_id: int, n: int = 2) -> list[ChunkRow]:
    return [
        ChunkRow(
            source_id=source_id,
            ordinal=i,
            content=f"Imported chunk {i}: replace the E-2{i} part.",
            content_hash=f"hash-{i}",
            token_count=10 + i,
            token_counter="test-counter",
            location={"heading_path": ["Manual", "部品"], "char_start": i},
            pinned=i == 1,
            valid_until=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC) if i == 0 else None,
        )
        for i in range(n)
    ]


def vectors(dimensions: int, n: int = 2) -> list[list[float]]:
    return [[(i + 1) * 0.25] + [0.0] * (dimensions - 1) for i in range(n)]


def vector_texts(column: str) -> list[str | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column}::text FROM {KnowledgeChunk._meta.db_table} ORDER BY ordinal"
        )
        return [text for (text,) in cursor.fetchall()]


def test_imported_vectors_fill_the_active_slot_and_owe_nothing():
    model, dimensions = configured_space()
    imported = source()

    assert chunks_with_vectors_copy(rows(imported.pk), vectors(dimensions), model=model) == 2

    chunks = list(KnowledgeChunk.objects.order_by("ordinal"))
    assert [c.content for c in chunks] == [r.content for r in rows(imported.pk)]
    assert [c.location for c in chunks] == [r.location for r in rows(imported.pk)]
    assert [(c.token_count, c.token_counter, c.pinned, c.enabled) for c in chunks] == [
        (10, "test-counter", False, True),
        (11, "test-counter", True, True),
    ]
    assert chunks[0].valid_until == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert chunks[1].valid_until is None
    assert all(c.embedding_status == EmbeddingStatus.DONE for c in chunks)
    assert [c.embedding_text_hash for c in chunks] == ["hash-0", "hash-1"]
    assert all((c.embedding_model, c.embedding_alt_model) == (model, "") for c in chunks)
    assert all(c.embedding_attempts == 0 and c.embedding_errors == [] for c in chunks)
    texts = vector_texts("embedding")
    assert [float(t.strip("[]").split(",")[0]) for t in texts] == [0.25, 0.5]
    assert vector_texts("embedding_alt") == [None, None]


def test_vectors_of_a_space_the_index_does_not_hold_are_refused():
    model, dimensions = configured_space()
    imported = source()

    with pytest.raises(ValueError, match="have no slot"):
        chunks_with_vectors_copy(rows(imported.pk), vectors(dimensions), model="another-model")
    with pytest.raises(ValueError, match="have no slot"):
        chunks_with_vectors_copy(rows(imported.pk), vectors(dimensions + 8), model=model)
    assert not KnowledgeChunk.objects.exists()


def test_a_vector_count_that_does_not_match_the_rows_is_refused():
    model, dimensions = configured_space()

    with pytest.raises(ValueError, match="expected 2 vectors, got 1"):
        chunks_with_vectors_copy(rows(source().pk), vectors(dimensions, n=1), model=model)


def test_during_a_switch_target_vectors_go_to_the_other_slot_and_active_ones_stay_owed():
    model, dimensions = configured_space()
    EmbeddingSpaceState.objects.create(
        pk=1,
        active_model=model,
        active_dimensions=dimensions,
        target_model="target-model",
        target_dimensions=8,
    )
    imported = source()

    chunks_with_vectors_copy(rows(imported.pk), vectors(8), model="target-model")
    assert set(KnowledgeChunk.objects.values_list("embedding_status", flat=True)) == {
        EmbeddingStatus.DONE
    }
    assert vector_texts("embedding") == [None, None]
    assert set(KnowledgeChunk.objects.values_list("embedding_alt_model", flat=True)) == {
        "target-model"
    }

    KnowledgeChunk.objects.all().delete()
    chunks_with_vectors_copy(rows(imported.pk), vectors(dimensions), model=model)
    assert set(KnowledgeChunk.objects.values_list("embedding_status", flat=True)) == {
        EmbeddingStatus.PENDING
    }
    assert set(KnowledgeChunk.objects.values_list("embedding_model", flat=True)) == {model}


def test_a_row_the_server_refuses_fails_the_whole_copy():
    # As Django's error, like any cursor's: nothing of the copy is kept.
    from django.db import IntegrityError, transaction

    model, dimensions = configured_space()
    imported = source()
    many = rows(imported.pk, n=3000)
    many[-1] = ChunkRow(**{**many[-1].__dict__, "ordinal": 0})  # a second ordinal 0
    with pytest.raises(IntegrityError), transaction.atomic():
        chunks_with_vectors_copy(many, vectors(dimensions, n=3000), model=model)
    assert not KnowledgeChunk.objects.exists()
