"""core/edge.py's PageTextMiddleware: pages and the admin refuse NUL and lone surrogates (and a
query that is not UTF-8) with a 400 page naming the field, before any view reads or writes."""

import pytest

from knowledge.models import Answer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/knowledge/search/?q=a%00b",
        "/knowledge/sources/?page=%00",
        "/dispatch/cases/?status=%00",
        # Django's own admin search reached PostgreSQL with the NUL: a 500 before.
        "/admin/knowledge/knowledgesource/?q=%00",
        "/admin/dispatch/serviceorder/?q=x%00",
    ],
)
def test_a_nul_in_a_query_is_a_400_page_naming_the_field(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == 400
    text = response.content.decode()
    assert "TEXT_INVALID_CHARACTER" in text and "U+0000" in text


def test_a_query_that_is_not_utf8_is_refused(admin_client):
    response = admin_client.get("/knowledge/search/?q=%ED%A0%80")
    assert response.status_code == 400
    assert "TEXT_INVALID_ENCODING" in response.content.decode()


def test_a_nul_in_a_path_is_refused(admin_client):
    response = admin_client.get("/sessions/line%00bot/")
    assert response.status_code == 400
    assert "TEXT_INVALID_CHARACTER" in response.content.decode()


@pytest.mark.parametrize("multipart", [True, False])
def test_a_nul_in_a_form_field_writes_nothing(admin_client, multipart):
    # The ask page reads its fields straight from the form: it stored the answer, then failed.
    data = {"q": "How do I reset\x00 the lock?"}
    if multipart:
        response = admin_client.post("/knowledge/ask/", data)
    else:
        response = admin_client.post(
            "/knowledge/ask/",
            "q=How+do+I+reset%00+the+lock%3F",
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code == 400
    assert "form.q" in response.content.decode()
    assert not Answer.objects.exists()


def test_ordinary_text_passes(admin_client):
    response = admin_client.get("/admin/knowledge/knowledgesource/?q=%E5%86%8D%E8%B5%B7%E5%8B%95")
    assert response.status_code == 200
