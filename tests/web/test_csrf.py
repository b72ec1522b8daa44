"""CSRF on the pages, with a client that enforces it as a browser's requests meet it: an htmx
POST without the token is refused (403) and writes nothing; the token the page puts on <body>
(hx-headers) makes it pass."""

import json
import re

import pytest
from django.test import Client

from knowledge.models import KnowledgeSource
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def browser_client(staff_user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    return client


def page_token(client: Client, path: str) -> str:
    """The X-CSRFToken header htmx sends from this page: hx-headers on <body>."""
    body = re.search(r"<body hx-headers='([^']*)'", client.get(path).content.decode())
    return json.loads(body.group(1))["X-CSRFToken"]


def test_an_htmx_post_without_the_token_is_refused_and_writes_nothing(browser_client):
    source = make_source()
    response = browser_client.post(
        f"/knowledge/sources/{source.pk}/enabled/", {"enabled": "false"}, headers=HTMX
    )
    assert response.status_code == 403
    assert KnowledgeSource.objects.get(pk=source.pk).enabled


def test_an_htmx_post_with_a_forged_token_is_refused(browser_client):
    source = make_source()
    browser_client.get(f"/knowledge/sources/{source.pk}/")  # the CSRF cookie
    response = browser_client.post(
        f"/knowledge/sources/{source.pk}/enabled/",
        {"enabled": "false"},
        headers={**HTMX, "X-CSRFToken": "x" * 64},
    )
    assert response.status_code == 403
    assert KnowledgeSource.objects.get(pk=source.pk).enabled


def test_the_token_on_the_pages_body_lets_the_htmx_post_through(browser_client):
    source = make_source()
    token = page_token(browser_client, f"/knowledge/sources/{source.pk}/")
    response = browser_client.post(
        f"/knowledge/sources/{source.pk}/enabled/",
        {"enabled": "false"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert not KnowledgeSource.objects.get(pk=source.pk).enabled


@pytest.mark.parametrize(
    "path",
    [
        "/knowledge/ask/stream/",
        "/knowledge/sources/text/",
        "/dispatch/cases/new/",
        "/accounts/logout/",
    ],
)
def test_every_page_post_needs_the_token(browser_client, path):
    response = browser_client.post(path, {"q": "battery", "text": "x"}, headers=HTMX)
    assert response.status_code == 403


def test_the_login_form_needs_the_token_too(staff_user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/accounts/login/", {"username": "curator", "password": "correct-horse-battery"}
    )
    assert response.status_code == 403
