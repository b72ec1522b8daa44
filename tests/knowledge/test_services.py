from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from knowledge.models import (
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    searchable_chunk_sql,
)
from knowledge.services import (
    CurationError,
    chunk_update,
    chunks_mark_for_embedding,
    source_delete,
    source_supersede,
    source_update,
)
from knowledge.tokens import get_token_counter
from tests.knowledge.factories import fake_embed, make_source

pytestmark = pytest.mark.django_db


def test_editing_chunk_text_drops_the_vector_and_queues_reembedding():
    source = make_source()
    fake_embed(source)
    chunk = source.chunks.first()
    chunk_update(chunk=chunk, content="New wording of the battery advice.")
    chunk.refresh_from_db()
    assert chunk.embedding is None
    assert chunk.embedding_status == EmbeddingStatus.PENDING
    assert chunk.content_hash != "" and chunk.token_count >= 1
    counter = get_token_counter()
    assert chunk.token_count == counter.count(chunk.content)
    assert chunk.token_counter == counter.name  # the pipeline may pack with the new count
    source.refresh_from_db()
    assert source.status == "pending"


def test_editing_flags_only_keeps_the_vector():
    source = make_source()
    fake_embed(source)
    chunk = source.chunks.first()
    chunk_update(chunk=chunk, pinned=True, enabled=False)
    chunk.refresh_from_db()
    assert chunk.pinned and not chunk.enabled
    assert chunk.embedding is not None and chunk.embedding_status == EmbeddingStatus.DONE


def test_empty_chunk_text_is_refused():
    chunk = make_source().chunks.first()
    with pytest.raises(CurationError) as excinfo:
        chunk_update(chunk=chunk, content="   ")
    assert excinfo.value.code == "CHUNK_EMPTY_CONTENT"


def test_expired_and_disabled_chunks_drop_out_of_searchable():
    source = make_source()
    first, second, *_ = source.chunks.order_by("ordinal")
    chunk_update(chunk=first, valid_until=timezone.now() - timezone.timedelta(days=1))
    chunk_update(chunk=second, enabled=False)
    searchable = set(KnowledgeChunk.objects.searchable().values_list("pk", flat=True))
    assert first.pk not in searchable and second.pk not in searchable
    assert searchable  # the rest stays


def test_searchable_sql_selects_the_same_chunks_as_the_queryset():
    current, disabled_source = make_source(uri="kb://a"), make_source(uri="kb://b")
    old = make_source(uri="kb://old")
    source_supersede(old=old, new=make_source(uri="kb://new"))
    KnowledgeSource.objects.filter(pk=disabled_source.pk).update(enabled=False)
    first, second, third, *_ = current.chunks.order_by("ordinal")
    KnowledgeChunk.objects.filter(pk=first.pk).update(
        valid_until=timezone.now() - timedelta(days=1)
    )
    KnowledgeChunk.objects.filter(pk=second.pk).update(
        valid_until=timezone.now() + timedelta(days=1)
    )
    KnowledgeChunk.objects.filter(pk=third.pk).update(enabled=False)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id FROM {KnowledgeChunk._meta.db_table} c "
            f"JOIN {KnowledgeSource._meta.db_table} s ON s.id = c.source_id "
            f"WHERE {searchable_chunk_sql('c', 's')}"
        )
        by_sql = {row[0] for row in cursor.fetchall()}
    by_queryset = set(KnowledgeChunk.objects.searchable().values_list("pk", flat=True))
    assert by_sql == by_queryset
    assert second.pk in by_sql and not by_sql & {first.pk, third.pk}
    assert not by_sql & set(
        KnowledgeChunk.objects.filter(source__in=[old, disabled_source]).values_list(
            "pk", flat=True
        )
    )


def test_superseded_sources_leave_search_and_link_to_the_new_revision():
    old = make_source(uri="kb://v1")
    new = make_source(uri="kb://v2")
    source_supersede(old=old, new=new)
    old.refresh_from_db()
    assert old.superseded_by == new and not old.enabled
    assert not KnowledgeChunk.objects.searchable().filter(source=old).exists()
    assert list(new.supersedes.all()) == [old]
    with pytest.raises(CurationError):
        source_supersede(old=new, new=old)


def test_metadata_is_merged_or_replaced():
    source = make_source(metadata={"brand": "Kagiya", "lang": "en"})
    source_update(source=source, metadata={"lang": "ja"})
    assert source.metadata == {"brand": "Kagiya", "lang": "ja"}
    source_update(source=source, metadata={"only": "this"}, replace_metadata=True)
    assert KnowledgeSource.objects.get(pk=source.pk).metadata == {"only": "this"}


def test_mark_for_embedding_resets_attempts():
    source = make_source()
    KnowledgeChunk.objects.filter(source=source).update(
        embedding_status="dead", embedding_attempts=5
    )
    assert chunks_mark_for_embedding(chunks=source.chunks.all()) == source.chunks.count()
    assert set(source.chunks.values_list("embedding_status", "embedding_attempts")) == {
        ("pending", 0)
    }


def test_deleting_a_source_deletes_its_chunks():
    source = make_source()
    source_delete(source=source)
    assert not KnowledgeChunk.objects.exists()
