"""Bodies and uploads over their limits: 413 with the limit's code, the body not read whole, no
temporary file left, nothing stored."""

import tempfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from dispatch.models import ProblemCardPhoto
from knowledge.models import KnowledgeSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def temp_dir(settings, tmp_path):
    """Django's upload temporary files go here, so a test sees any left behind."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    tempfile.tempdir = None
    return tmp_path


def test_a_json_body_over_the_limit_is_refused_from_its_length_without_reading_it(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    # The declared length is far larger than the bytes sent: reading the body would fail.
    response = api.client.post(
        "/api/v1/sources",
        data=b'{"title": "t", "text": "x"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"},
        CONTENT_LENGTH="50000000",
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert not KnowledgeSource.objects.exists()


def test_an_upload_over_the_limit_stops_at_the_limit_and_leaves_no_temp_file(
    api, settings, temp_dir
):
    settings.KIOKU_MAX_UPLOAD_BYTES = 64 * 1024
    upload = SimpleUploadedFile("big.txt", b"x" * (512 * 1024), content_type="text/plain")
    response = api.post("/api/v1/sources/upload", data={"file": upload})
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "SOURCE_TOO_LARGE"
    assert body["details"]["limit"] == 64 * 1024
    assert body["details"]["size"] < 512 * 1024  # it stopped reading
    assert list(Path(temp_dir).iterdir()) == []
    assert not KnowledgeSource.objects.exists()


def test_an_upload_under_the_limit_is_ingested(api, settings, temp_dir):
    settings.KIOKU_MAX_UPLOAD_BYTES = 64 * 1024
    upload = SimpleUploadedFile("small.txt", b"hello world", content_type="text/plain")
    response = api.post("/api/v1/sources/upload", data={"file": upload})
    assert response.status_code == 201, response.content


def test_a_photo_over_the_limit_stops_at_the_limit_and_leaves_no_temp_file(api, settings, temp_dir):
    from tests.dispatch.factories import make_card

    card = make_card()
    settings.KIOKU_MAX_PHOTO_BYTES = 64 * 1024
    upload = SimpleUploadedFile("p.png", b"\x89PNG" + b"0" * (512 * 1024))
    response = api.post(f"/api/v1/problem-cards/{card.pk}/photos", data={"file": upload})
    assert response.status_code == 413
    assert response.json()["code"] == "DISPATCH_PHOTO_TOO_LARGE"
    assert list(Path(temp_dir).iterdir()) == []
    assert not ProblemCardPhoto.objects.exists()


def test_an_upload_without_a_key_is_refused_before_the_body_is_read(api_as, settings, temp_dir):
    settings.KIOKU_MAX_UPLOAD_BYTES = 64 * 1024
    upload = SimpleUploadedFile("big.txt", b"x" * (512 * 1024), content_type="text/plain")
    assert api_as().post("/api/v1/sources/upload", data={"file": upload}).status_code == 401
