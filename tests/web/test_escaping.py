"""Text from documents, chats, cases and models is text on every page: its markup comes out
escaped, and the only tags Kioku adds to it are <mark> in snippets and citation links in
answers."""

import re

import pytest

from knowledge.search.snippets import highlight_snippet
from knowledge.views.answers import answer_html
from tests.web.conftest import HOSTILE
from tests.web.test_headers import page_urls

pytestmark = pytest.mark.django_db(transaction=True)

RAW = ("<script>", "<img id=", "<b id=", 'hx-get="/accounts', 'onerror="window')


def tags(html: str) -> set[str]:
    return {name.lower() for name in re.findall(r"</?([A-Za-z][\w:-]*)", html)}


@pytest.mark.parametrize("terms", [["hostile"], ["script"], ["<b"], ["lt", "amp"], []])
def test_a_snippet_marks_matches_and_escapes_everything_else(terms):
    snippet = highlight_snippet(f"A hostile note {HOSTILE} about script tags & <b>", terms)
    assert tags(snippet) <= {"mark"}
    assert not any(raw in snippet for raw in RAW)
    assert "&lt;" in snippet and "&gt;" in snippet


def test_a_snippet_marks_a_term_written_with_markup_characters():
    assert highlight_snippet("press <b> twice", ["<b>"]) == "press <mark>&lt;b&gt;</mark> twice"


def test_an_answer_is_text_with_citation_links_only(hostile_site):
    from knowledge.models import Answer

    answer = Answer.objects.get(pk=hostile_site.answer_id)
    answer.answer = f"Replace them [1]. {HOSTILE} [3]"
    html = answer_html(answer)
    assert tags(html) <= {"a"}
    assert not any(raw in html for raw in RAW)
    assert re.findall(r'<a class="citation" href="/knowledge/chunks/\d+/"', html)


def test_no_page_shows_hostile_markup_as_markup(curator, hostile_site):
    shown = 0
    for url in page_urls(hostile_site) + ["/knowledge/search/?q=batteries"]:
        response = curator.get(url)
        body = response.content.decode()
        if not response["Content-Type"].startswith("text/html"):
            # A download (the evaluation set's JSONL) is data, never rendered as a page.
            assert response["X-Content-Type-Options"] == "nosniff", url
            assert response["Content-Disposition"].startswith("attachment"), url
            continue
        assert not any(raw in body for raw in RAW), url
        shown += "&lt;script&gt;window.__pwned" in body
    assert shown >= 7  # sources, a source, chunks, search, the answer, the session, the case


def test_htmx_fragments_escape_it_too(curator, hostile_site):
    for url in (
        "/knowledge/search/?q=batteries",
        f"/knowledge/answers/{hostile_site.answer_id}/",
        f"/knowledge/sources/{hostile_site.source_id}/",
        "/knowledge/sources/?q=Battery",
    ):
        body = curator.get(url, headers={"HX-Request": "true"}).content.decode()
        assert "&lt;script&gt;" in body, url
        assert not any(raw in body for raw in RAW), url


def test_the_admin_escapes_it(client, django_user_model, hostile_site):
    admin = django_user_model.objects.create_superuser("root", password="root-pass-123456")
    client.force_login(admin)
    for url in (
        "/admin/knowledge/knowledgesource/",
        f"/admin/knowledge/knowledgesource/{hostile_site.source_id}/change/",
        f"/admin/knowledge/answer/{hostile_site.answer_id}/change/",
        f"/admin/dispatch/problemcard/{hostile_site.card_id}/change/",
        "/admin/sessions_app/chatmessage/",
    ):
        response = client.get(url)
        assert response.status_code in (200, 404), url
        assert not any(raw in response.content.decode() for raw in RAW), url
