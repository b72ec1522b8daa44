from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.models import KnowledgeSource
from tests.helpers import assert_error_shape
from tests.knowledge.factories import MANUAL_MD, make_source

pytestmark = pytest.mark.django_db
FILES = Path(__file__).parent / "files"


def test_create_from_text_returns_201_with_chunks(api):
    response = api.post(
        "/api/v1/sources",
        json={
            "title": "KG-200",
            "text": MANUAL_MD,
            "format": "markdown",
            "source_type": "manual",
            "uri": "kb://kg200",
            "metadata": {"brand": "Kagiya"},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["outcome"] == "created" and body["chunks"] >= 3
    assert body["source"]["chunk_count"] == body["chunks"]
    assert body["source"]["metadata"] == {"brand": "Kagiya"}
    again = api.post(
        "/api/v1/sources",
        json={
            "title": "KG-200",
            "text": MANUAL_MD,
            "format": "markdown",
            "source_type": "manual",
            "uri": "kb://kg200",
        },
    )
    assert again.status_code == 200 and again.json()["outcome"] == "unchanged"


def test_create_needs_write_scope(api_as):
    response = api_as("read").post("/api/v1/sources", json={"title": "x", "text": "y"})
    assert_error_shape(response, 403, "AUTH_FORBIDDEN_SCOPE")


def test_create_validates_type_and_format(api):
    response = api.post("/api/v1/sources", json={"title": "x", "text": "y", "source_type": "video"})
    assert_error_shape(response, 422, "VALIDATION_ERROR")
    response = api.post("/api/v1/sources", json={"title": "x", "text": "y", "format": "docx"})
    assert_error_shape(response, 422, "VALIDATION_ERROR")


def test_empty_text_is_422_with_the_failed_source_kept(api):
    response = api.post("/api/v1/sources", json={"title": "Empty", "text": "  "})
    body = assert_error_shape(response, 422, "SOURCE_EMPTY")
    assert KnowledgeSource.objects.get(pk=body["details"]["source_id"]).status == "failed"


def test_upload_a_pdf_keeps_page_numbers(api):
    upload = SimpleUploadedFile(
        "two.pdf", (FILES / "two_pages.pdf").read_bytes(), "application/pdf"
    )
    response = api.post(
        "/api/v1/sources/upload",
        data={"file": upload, "source_type": "manual", "metadata": '{"brand": "Lumio"}'},
    )
    assert response.status_code == 201, response.content
    source_id = response.json()["source"]["id"]
    chunks = api.get(f"/api/v1/sources/{source_id}/chunks").json()["items"]
    assert {chunk["location"]["page"] for chunk in chunks} == {1, 2}


def test_upload_an_encrypted_pdf_is_a_clear_422(api):
    upload = SimpleUploadedFile(
        "secret.pdf", (FILES / "encrypted.pdf").read_bytes(), "application/pdf"
    )
    response = api.post("/api/v1/sources/upload", data={"file": upload})
    body = assert_error_shape(response, 422, "SOURCE_ENCRYPTED_PDF")
    assert "password" in body["message"].lower()


def test_upload_over_the_limit_is_413(api, settings):
    settings.KIOKU_MAX_UPLOAD_BYTES = 2048
    upload = SimpleUploadedFile("big.txt", b"word " * 1000, "text/plain")
    body = assert_error_shape(
        api.post("/api/v1/sources/upload", data={"file": upload}), 413, "SOURCE_TOO_LARGE"
    )
    assert body["details"] == {"size": 5000, "limit": 2048}
    assert not KnowledgeSource.objects.exists()


def test_text_over_the_limit_is_413(api, settings):
    settings.KIOKU_MAX_UPLOAD_BYTES = 1024
    response = api.post("/api/v1/sources", json={"title": "big", "text": "x" * 2000})
    assert_error_shape(response, 413, "SOURCE_TOO_LARGE")


def test_body_larger_than_django_allows_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/v1/sources", json={"title": "big", "text": "x" * 5000})
    assert_error_shape(response, 413, "PAYLOAD_TOO_LARGE")


def test_upload_with_bad_metadata_is_422(api):
    upload = SimpleUploadedFile("a.txt", b"hello there", "text/plain")
    response = api.post("/api/v1/sources/upload", data={"file": upload, "metadata": "[1, 2]"})
    assert_error_shape(response, 422, "VALIDATION_ERROR")


def test_upload_without_a_file_is_422(api):
    assert_error_shape(
        api.post("/api/v1/sources/upload", data={"title": "x"}), 422, "VALIDATION_ERROR"
    )


def test_list_paginates_and_filters(api):
    for n in range(3):
        make_source(title=f"Manual {n}", uri=f"kb://m{n}")
    make_source(title="FAQ", source_type="faq", text="Q? A.", text_format="text")
    page = api.get("/api/v1/sources?source_type=manual&limit=2&offset=0").json()
    assert page["count"] == 3 and len(page["items"]) == 2
    assert api.get("/api/v1/sources?q=faq").json()["count"] == 1
    assert_error_shape(api.get("/api/v1/sources?limit=500"), 422, "VALIDATION_ERROR")
    assert_error_shape(api.get("/api/v1/sources?source_type=bogus"), 422, "VALIDATION_ERROR")


def test_get_patch_delete_a_source(api):
    source = make_source(metadata={"brand": "Kagiya"})
    assert api.get(f"/api/v1/sources/{source.pk}").json()["title"] == "KG-200 Manual"
    patched = api.patch(
        f"/api/v1/sources/{source.pk}",
        json={
            "title": "Renamed",
            "metadata": {"lang": "en"},
            "enabled": False,
            "fetch_interval_minutes": 60,
        },
    )
    assert patched.status_code == 200, patched.content
    body = patched.json()
    assert (body["title"], body["enabled"], body["fetch_interval_minutes"]) == (
        "Renamed",
        False,
        60,
    )
    assert body["metadata"] == {"brand": "Kagiya", "lang": "en"}
    assert api.delete(f"/api/v1/sources/{source.pk}").status_code == 204
    assert_error_shape(api.get(f"/api/v1/sources/{source.pk}"), 404, "NOT_FOUND")


def test_patch_rejects_an_empty_title(api):
    source = make_source()
    assert_error_shape(
        api.patch(f"/api/v1/sources/{source.pk}", json={"title": ""}), 422, "VALIDATION_ERROR"
    )


def test_chunk_patch_edits_text_and_flags(api):
    chunk = make_source().chunks.first()
    response = api.patch(
        f"/api/v1/chunks/{chunk.pk}", json={"content": "Edited text.", "pinned": True}
    )
    assert response.status_code == 200
    assert response.json()["content"] == "Edited text." and response.json()["pinned"] is True
    assert response.json()["embedding_status"] == "pending"


def test_chunk_of_unknown_source_is_404(api):
    assert_error_shape(api.get("/api/v1/sources/424242/chunks"), 404, "NOT_FOUND")


def test_dead_letters_are_listed_with_their_errors_and_retried_by_an_admin(api, api_as):
    source = make_source()
    chunk = source.chunks.first()
    from knowledge.models import KnowledgeChunk

    KnowledgeChunk.objects.filter(pk=chunk.pk).update(
        embedding_status="dead",
        embedding_attempts=5,
        embedding_last_error="400 bad input",
        embedding_errors=[{"attempt": 5, "error": "400 bad input"}],
    )
    page = api_as("read").get("/api/v1/index/dead-letters").json()
    assert page["count"] == 1 and page["items"][0]["last_error"] == "400 bad input"
    assert page["items"][0]["errors"] == [{"attempt": 5, "error": "400 bad input"}]
    assert_error_shape(
        api_as("write").post("/api/v1/index/dead-letters/retry", json={}),
        403,
        "AUTH_FORBIDDEN_SCOPE",
    )
    assert api.post("/api/v1/index/dead-letters/retry", json={"ids": [chunk.pk]}).json() == {
        "queued": 1
    }
    chunk.refresh_from_db()
    assert (chunk.embedding_status, chunk.embedding_attempts) == ("pending", 0)
