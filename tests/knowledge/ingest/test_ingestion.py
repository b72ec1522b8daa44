import pytest
from django.db import IntegrityError, connection, transaction

from knowledge.ingest.base import IngestError
from knowledge.ingest.ingestion import (
    content_hash,
    source_ingest_file,
    source_ingest_text,
    source_rechunk,
)
from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource, SourceStatus
from knowledge.queries import current_embedding_model
from tests.knowledge.factories import MANUAL_MD, fake_embed

pytestmark = pytest.mark.django_db


def test_markdown_is_stored_as_chunks_with_heading_paths():
    result = source_ingest_text(
        text=MANUAL_MD, text_format="markdown", title="KG-200", uri="kb://kg200"
    )
    assert result.outcome == "created"
    chunks = list(result.source.chunks.order_by("ordinal"))
    assert len(chunks) == result.chunks >= 2
    paths = [chunk.location["heading_path"] for chunk in chunks]
    assert ["KG-200 Manual", "Troubleshooting", "E-21"] in paths
    assert all(chunk.token_count >= 1 for chunk in chunks)
    assert all(chunk.embedding is None and chunk.embedding_status == "pending" for chunk in chunks)
    assert result.source.status == SourceStatus.PENDING
    assert result.tokens == sum(chunk.token_count for chunk in chunks)


def test_reingesting_an_unchanged_document_creates_nothing():
    first = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://same")
    ids_before = set(first.source.chunks.values_list("id", flat=True))
    again = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://same")
    assert again.outcome == "unchanged"
    assert again.source.pk == first.source.pk
    assert set(again.source.chunks.values_list("id", flat=True)) == ids_before
    assert KnowledgeSource.objects.count() == 1
    assert again.source.version == 1


def test_a_changed_document_replaces_chunks_and_keeps_unchanged_embeddings():
    first = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://kg")
    fake_embed(first.source, model=current_embedding_model())
    changed = MANUAL_MD.replace("Adjust the strike plate and test again.", "Call the office.")
    second = source_ingest_text(text=changed, text_format="markdown", title="KG", uri="kb://kg")
    assert second.outcome == "updated"
    assert second.source.version == 2
    chunks = list(second.source.chunks.order_by("ordinal"))
    kept = [c for c in chunks if c.embedding_status == EmbeddingStatus.DONE]
    fresh = [c for c in chunks if c.embedding_status == EmbeddingStatus.PENDING]
    assert second.embeddings_kept == len(kept) >= 1
    assert len(fresh) == 1 and "Call the office." in fresh[0].content
    assert all(
        c.embedding is not None and c.embedding_model == current_embedding_model() for c in kept
    )
    assert all(c.embedding is None for c in fresh)
    assert second.source.status == SourceStatus.PENDING


def test_vectors_of_a_model_the_index_does_not_hold_are_not_reused():
    first = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://old")
    fake_embed(first.source, model="retired-model")
    changed = MANUAL_MD.replace("Adjust the strike plate and test again.", "Call the office.")
    second = source_ingest_text(text=changed, text_format="markdown", title="KG", uri="kb://old")
    assert second.embeddings_kept == 0
    assert not second.source.chunks.filter(embedding__isnull=False).exists()
    assert set(second.source.chunks.values_list("embedding_status", flat=True)) == {"pending"}


def test_the_replacement_is_atomic(monkeypatch):
    first = source_ingest_text(
        text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://atomic"
    )
    before = list(first.source.chunks.values_list("id", "content"))

    import knowledge.ingest.ingestion

    def broken_copy(rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(knowledge.ingest.ingestion, "chunks_copy", broken_copy)
    with pytest.raises(RuntimeError):
        source_ingest_text(
            text=MANUAL_MD + "\nMore.", text_format="markdown", title="KG", uri="kb://atomic"
        )
    source = KnowledgeSource.objects.get(pk=first.source.pk)
    assert list(source.chunks.values_list("id", "content")) == before
    assert source.version == 1 and source.content_hash == content_hash(MANUAL_MD)


def test_a_broken_file_marks_the_source_failed_with_the_reason():
    result = source_ingest_file(
        data=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", filename="x.txt"
    )
    assert result.outcome == "failed"
    source = result.source
    assert source.status == SourceStatus.FAILED
    assert source.error_code == result.error_code and source.error_code.startswith("SOURCE_")
    assert source.error_message
    assert source.chunks.count() == 0


def test_invalid_utf8_is_a_clear_failure():
    result = source_ingest_file(data="café".encode("latin-1") + b" menu", filename="menu.txt")
    assert result.outcome == "failed"
    assert result.error_code == "SOURCE_INVALID_ENCODING"


def test_empty_text_is_a_clear_failure():
    result = source_ingest_text(text="   \n\n  ", title="Nothing")
    assert (result.outcome, result.error_code) == ("failed", "SOURCE_EMPTY")


def test_a_failed_reingest_keeps_the_earlier_chunks():
    good = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://flaky")
    count = good.source.chunks.count()
    bad = source_ingest_file(data=b"\x00\x01\x02\x03" * 100, filename="kg.txt", uri="kb://flaky")
    assert bad.outcome == "failed"
    assert bad.source.pk == good.source.pk
    assert bad.source.chunks.count() == count
    retry = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG", uri="kb://flaky")
    assert retry.outcome == "updated"  # a failed source is never "unchanged"
    assert retry.source.status == SourceStatus.PENDING


def test_unknown_source_type_is_refused():
    with pytest.raises(IngestError) as excinfo:
        source_ingest_text(text="hello", title="x", source_type="video")
    assert excinfo.value.code == "SOURCE_INVALID_TYPE"


def test_rechunk_rebuilds_chunks_and_keeps_embeddings():
    source = source_ingest_text(text=MANUAL_MD, text_format="markdown", title="KG").source
    fake_embed(source, model=current_embedding_model())
    before = list(source.chunks.order_by("ordinal").values_list("content", flat=True))
    result = source_rechunk(source=source)
    after = list(source.chunks.order_by("ordinal").values_list("content", flat=True))
    assert after == before
    assert result.embeddings_kept == len(after)


def test_database_refuses_empty_chunks_and_zero_tokens():
    source = source_ingest_text(text="Some text here.", title="x").source
    base = dict(source=source, content_hash="h", location={})
    with pytest.raises(IntegrityError), transaction.atomic():
        KnowledgeChunk.objects.create(ordinal=5, content="", token_count=1, **base)
    with pytest.raises(IntegrityError), transaction.atomic():
        KnowledgeChunk.objects.create(ordinal=6, content="x", token_count=0, **base)
    with pytest.raises(IntegrityError), transaction.atomic():
        KnowledgeChunk.objects.create(ordinal=0, content="dup", token_count=1, **base)


def test_keyword_column_indexes_cjk_as_bigrams_and_identifiers_whole():
    source = source_ingest_text(
        text="KG-300 電子錠の電池切れ。顯示 E-21 代表電池沒電。", title="混合", source_type="faq"
    ).source
    chunk = source.chunks.get()

    def matches(tsquery: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT search_vector @@ to_tsquery('simple', %s) FROM knowledge_knowledgechunk WHERE id = %s",
                [tsquery, chunk.pk],
            )
            return cursor.fetchone()[0]

    assert matches("電子 & 子錠")  # 「電子錠」
    assert matches("電池 & 池沒 & 沒電")  # 「電池沒電」
    assert matches("e <-> '-21'") and matches("kg <-> '-300'")  # identifiers as exact phrases
    assert not matches("電子 & 子鍵")
    assert not matches("e <-> '-22'")


def test_keyword_column_follows_edits():
    from knowledge.services import chunk_update

    chunk = source_ingest_text(text="The lock beeps twice.", title="x").source.chunks.get()
    chunk_update(chunk=chunk, content="指紋辨識失敗")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector @@ to_tsquery('simple', '指紋 & 紋辨') FROM knowledge_knowledgechunk WHERE id = %s",
            [chunk.pk],
        )
        assert cursor.fetchone()[0]


def test_words_inside_angle_brackets_are_indexed():
    chunk = source_ingest_text(
        text="Press <reset> for 10 s. <script>alert(1)</script>", title="x"
    ).source.chunks.get()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector @@ to_tsquery('simple', 'reset & alert') FROM knowledge_knowledgechunk WHERE id = %s",
            [chunk.pk],
        )
        assert cursor.fetchone()[0]


@pytest.mark.parametrize(
    "ingest",
    [
        lambda: source_ingest_text(text="é" * 60, title="Accents"),  # 120 bytes in UTF-8
        lambda: source_ingest_file(data=b"x" * 101, filename="big.txt"),
    ],
)
def test_the_service_refuses_a_document_over_the_upload_limit(ingest, settings):
    # The one upload limit: the API, the pages and the CLI all reach it through the service.
    settings.KIOKU_MAX_UPLOAD_BYTES = 100
    with pytest.raises(IngestError) as excinfo:
        ingest()
    assert excinfo.value.code == "SOURCE_TOO_LARGE" and excinfo.value.status == 413
    assert excinfo.value.details["limit"] == 100 and excinfo.value.details["size"] > 100
    assert not KnowledgeSource.objects.exists()


def test_a_document_at_the_upload_limit_is_accepted(settings):
    settings.KIOKU_MAX_UPLOAD_BYTES = 100
    result = source_ingest_file(data=b"word " * 20, filename="exact.txt")
    assert result.outcome == "created"
