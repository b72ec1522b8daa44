"""Photos on problem cards: the service (type from the bytes, size limit, safe names, nothing
stored on refusal), the API route and scopes, the card page, and the login-only photo URL."""

import base64
import re
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.errors import ApiError
from dispatch.models import ProblemCardPhoto
from dispatch.photos import problem_card_photo_add
from tests.dispatch.factories import make_card
from tests.helpers import assert_error_shape, visible_text

pytestmark = pytest.mark.django_db(transaction=True)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# A real 1×1 red PNG and a real 1×1 JPEG (no Pillow needed).
PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    + _png_chunk(b"IEND", b"")
)
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////"
    "////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
TEXT = b"Not a photo at all, just words in a file called lock.jpg\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(media) -> list:
    return [path for path in media.rglob("*") if path.is_file()] if media.exists() else []


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type)


# --- The service ------------------------------------------------------------------------------


def test_a_png_is_stored_under_a_generated_name_whatever_the_client_called_it(media):
    card = make_card()
    photo = problem_card_photo_add(card_id=card.pk, data=PNG, filename="../../etc/passwd.gif")
    assert re.fullmatch(rf"problem-cards/{card.pk}/[0-9a-f]{{32}}\.png", photo.image.name)
    assert (photo.content_type, photo.size) == ("image/png", len(PNG))
    assert (media / photo.image.name).read_bytes() == PNG
    assert stored_files(media) == [media / photo.image.name]


def test_a_jpeg_named_png_is_stored_as_a_jpeg():
    photo = problem_card_photo_add(card_id=make_card().pk, data=JPEG, filename="lock.png")
    assert photo.content_type == "image/jpeg" and photo.image.name.endswith(".jpg")


@pytest.mark.parametrize(
    ("data", "content_type", "extension"),
    [(GIF, "image/gif", ".gif"), (WEBP, "image/webp", ".webp")],
)
def test_gif_and_webp_are_accepted(data, content_type, extension):
    photo = problem_card_photo_add(card_id=make_card().pk, data=data, filename="x")
    assert photo.content_type == content_type and photo.image.name.endswith(extension)


def test_a_text_file_named_jpg_is_refused_and_nothing_is_stored(media):
    card = make_card()
    with pytest.raises(ApiError) as refused:
        problem_card_photo_add(card_id=card.pk, data=TEXT, filename="lock.jpg")
    assert (refused.value.code, refused.value.status) == ("DISPATCH_PHOTO_NOT_IMAGE", 415)
    assert not ProblemCardPhoto.objects.exists() and stored_files(media) == []


def test_an_oversize_photo_is_refused_with_its_size_and_the_limit(settings, media):
    settings.KIOKU_MAX_PHOTO_BYTES = 1024
    data = PNG + b"\x00" * 1024
    with pytest.raises(ApiError) as refused:
        problem_card_photo_add(card_id=make_card().pk, data=data, filename="big.png")
    assert (refused.value.code, refused.value.status) == ("DISPATCH_PHOTO_TOO_LARGE", 413)
    assert refused.value.details == {"size": len(data), "limit": 1024}
    assert not ProblemCardPhoto.objects.exists() and stored_files(media) == []


def test_an_empty_file_is_refused(media):
    with pytest.raises(ApiError) as refused:
        problem_card_photo_add(card_id=make_card().pk, data=b"", filename="empty.jpg")
    assert (refused.value.code, refused.value.status) == ("DISPATCH_PHOTO_EMPTY", 422)
    assert not ProblemCardPhoto.objects.exists() and stored_files(media) == []


def test_a_photo_of_a_missing_card_is_refused(media):
    with pytest.raises(ApiError) as refused:
        problem_card_photo_add(card_id=999_999, data=PNG, filename="lock.png")
    assert refused.value.code == "DISPATCH_NOT_FOUND" and stored_files(media) == []


# --- The API ----------------------------------------------------------------------------------


def test_an_upload_is_201_with_the_photo_and_the_card_shows_it(api):
    card = make_card()
    response = api.post(
        f"/api/v1/problem-cards/{card.pk}/photos", data={"file": upload("lock.png", PNG)}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "url", "content_type", "size", "uploaded_at"}
    assert body["content_type"] == "image/png" and body["size"] == len(PNG)
    assert body["url"] == f"/dispatch/photos/{body['id']}/"
    photos = api.get(f"/api/v1/problem-cards/{card.pk}").json()["photos"]
    assert [photo["id"] for photo in photos] == [body["id"]]


def test_uploading_needs_the_write_scope(api_as, media):
    card = make_card()
    path = f"/api/v1/problem-cards/{card.pk}/photos"
    assert_error_shape(
        api_as().post(path, data={"file": upload("lock.png", PNG)}), 401, "AUTH_REQUIRED"
    )
    assert_error_shape(
        api_as("read").post(path, data={"file": upload("lock.png", PNG)}),
        403,
        "AUTH_FORBIDDEN_SCOPE",
    )
    assert not ProblemCardPhoto.objects.exists() and stored_files(media) == []


def test_the_api_refuses_text_sent_as_a_jpeg_with_415(api):
    card = make_card()
    response = api.post(
        f"/api/v1/problem-cards/{card.pk}/photos", data={"file": upload("lock.jpg", TEXT)}
    )
    assert_error_shape(response, 415, "DISPATCH_PHOTO_NOT_IMAGE")


def test_the_api_refuses_an_oversize_photo_with_413(api, settings):
    settings.KIOKU_MAX_PHOTO_BYTES = 1024
    card = make_card()
    response = api.post(
        f"/api/v1/problem-cards/{card.pk}/photos",
        data={"file": upload("big.png", PNG + b"\x00" * 2048)},
    )
    body = assert_error_shape(response, 413, "DISPATCH_PHOTO_TOO_LARGE")
    assert body["details"] == {"size": len(PNG) + 2048, "limit": 1024}


def test_a_photo_for_an_unknown_card_is_404(api):
    response = api.post("/api/v1/problem-cards/999999/photos", data={"file": upload("a.png", PNG)})
    assert response.status_code == 404


# --- The card page and the photo URL ----------------------------------------------------------


def test_staff_add_a_photo_on_the_card_page_and_see_its_thumbnail(curator):
    card = make_card()
    response = curator.post(
        f"/dispatch/cases/{card.pk}/photos/", {"file": upload("lock.jpg", JPEG)}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/dispatch/cases/{card.pk}/"
    photo = ProblemCardPhoto.objects.get()
    assert f'src="/dispatch/photos/{photo.pk}/"' in response.content.decode()


def test_the_page_shows_why_a_file_was_refused(curator, media):
    card = make_card()
    response = curator.post(f"/dispatch/cases/{card.pk}/photos/", {"file": upload("x.jpg", TEXT)})
    assert response.status_code == 415
    assert "DISPATCH_PHOTO_NOT_IMAGE" in visible_text(response)
    assert stored_files(media) == []


def test_an_agent_without_staff_rights_cannot_add_a_photo_or_see_the_form(agent, media):
    card = make_card()
    response = agent.post(f"/dispatch/cases/{card.pk}/photos/", {"file": upload("a.png", PNG)})
    assert response.status_code == 403
    assert not ProblemCardPhoto.objects.exists() and stored_files(media) == []
    assert 'id="photo-form"' not in agent.get(f"/dispatch/cases/{card.pk}/").content.decode()


def test_the_photo_url_needs_a_login_and_the_view_permission(client, make_user):
    photo = problem_card_photo_add(card_id=make_card().pk, data=PNG, filename="lock.png")
    url = f"/dispatch/photos/{photo.pk}/"
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(make_user("nobody"))
    assert client.get(url).status_code == 403
    client.force_login(make_user("agent", "viewer"))
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == PNG


def test_media_is_not_served_publicly(client):
    photo = problem_card_photo_add(card_id=make_card().pk, data=PNG, filename="lock.png")
    assert client.get(f"/media/{photo.image.name}").status_code == 404
