"""The vector index from the outside: /api/v1/index/* and the /knowledge/index/ dashboard."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from knowledge.models import EmbeddingPipelineState, EmbeddingStatus, KnowledgeChunk
from knowledge.queries import current_embedding_model
from tests.helpers import assert_error_shape, visible_text
from tests.knowledge.factories import FAQ_MD, fake_embed, make_source

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DASHBOARD = "/knowledge/index/"


@pytest.fixture
def library():
    """A manual embedded with the current model, an FAQ waiting, one of its chunks dead."""
    manual = make_source(uri="kb://manual")
    fake_embed(manual)
    manual.chunks.update(embedding_model=current_embedding_model())
    faq = make_source(text=FAQ_MD, title="Door lock FAQ", source_type="faq", uri="kb://faq")
    faq.chunks.update(embedding_status=EmbeddingStatus.PENDING)
    KnowledgeChunk.objects.filter(pk=faq.chunks.first().pk).update(
        embedding_status=EmbeddingStatus.DEAD, embedding_attempts=5
    )
    return {"manual": manual, "faq": faq}


# --- API --------------------------------------------------------------------------------------


def test_status_api_answers_a_read_key(api_as, library):
    response = api_as("read").get("/api/v1/index/status")
    assert response.status_code == 200, response.content
    body = response.json()
    manual, faq = library["manual"].chunks.count(), library["faq"].chunks.count()
    assert body["chunks"] == {
        "total": manual + faq,
        "enabled": manual + faq,
        "enabled_embedded": manual,
    }
    assert (body["embedded"], body["pending"], body["dead_letters"]) == (manual, faq - 1, 1)
    assert body["model"] == current_embedding_model()
    assert body["available"] is True and body["warning"] is None
    assert body["pipeline"]["state"] == "running"
    assert set(body["sizes"]) == {"table", "hnsw_index", "gin_index"}
    assert body["sizes"]["hnsw_index"]["bytes"] > 0


def test_status_api_needs_a_key(api_as):
    assert_error_shape(api_as().get("/api/v1/index/status"), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize("action", ["rebuild", "clear"])
def test_index_actions_need_the_admin_scope(api_as, action, library):
    response = api_as("read", "write").post(f"/api/v1/index/{action}")
    body = assert_error_shape(response, 403, "AUTH_FORBIDDEN_SCOPE")
    assert body["details"]["required_scope"] == "admin"
    assert KnowledgeChunk.objects.filter(embedding__isnull=False).exists()


def test_rebuild_api_returns_documents_entries_and_duration(api, library):
    response = api.post("/api/v1/index/rebuild")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"documents", "entries", "duration_ms"}
    assert body["documents"] == 2
    assert body["entries"] == KnowledgeChunk.objects.count()


def test_clear_api_returns_how_many_chunks_were_cleared(api, library):
    # Chunks already waiting with no vector have nothing to clear.
    holding = library["manual"].chunks.count() + 1  # embedded, and the dead letter
    response = api.post("/api/v1/index/clear")
    assert response.status_code == 200, response.content
    assert response.json() == {"cleared": holding}
    assert not KnowledgeChunk.objects.filter(embedding__isnull=False).exists()


def test_index_actions_refuse_get(api):
    assert_error_shape(api.get("/api/v1/index/rebuild"), 405, "METHOD_NOT_ALLOWED")


# --- Dashboard --------------------------------------------------------------------------------


def test_dashboard_needs_a_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_dashboard_shows_the_numbers_to_staff(curator, library):
    response = curator.get(DASHBOARD)
    assert response.status_code == 200
    text = visible_text(response)
    manual, faq = library["manual"].chunks.count(), library["faq"].chunks.count()
    assert f"{manual} of {manual + faq} usable chunks" in text
    assert "<progress" in response.content.decode()
    assert current_embedding_model() in text
    assert "Rebuild index" in text and "Clear vectors" in text
    assert 'href="/admin/knowledge/knowledgechunk/?embedding_status__exact=dead"' in (
        response.content.decode()
    )


def test_dashboard_is_the_index_entry_of_the_navigation(curator):
    content = curator.get(DASHBOARD).content.decode()
    assert re.search(r'<a href="/knowledge/index/" aria-current="page">Index</a>', content)


def test_dashboard_hides_the_buttons_and_admin_link_from_non_staff(agent, library):
    response = agent.get(DASHBOARD)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Rebuild index" not in content and "Clear vectors" not in content
    assert "/admin/" not in content.split("<main", 1)[1]


def test_dashboard_answers_htmx_with_the_status_partial(curator, library):
    response = curator.get(DASHBOARD, headers=HTMX)
    content = response.content.decode()
    assert "<html" not in content and 'id="index-status"' in content
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_status_partial_polls_while_chunks_are_pending(curator, library):
    content = curator.get(DASHBOARD, headers=HTMX).content.decode()
    assert 'hx-trigger="every 3s, index-changed from:body"' in content


def test_status_partial_stops_polling_when_nothing_is_pending(curator, library):
    KnowledgeChunk.objects.filter(embedding_status=EmbeddingStatus.PENDING).update(
        embedding_status=EmbeddingStatus.DEAD
    )
    content = curator.get(DASHBOARD, headers=HTMX).content.decode()
    assert "every 3s" not in content
    assert 'hx-trigger="index-changed from:body"' in content


def test_dashboard_shows_the_pipeline_blocked_by_quota(curator, library):
    EmbeddingPipelineState.objects.create(
        id=1, paused_until=timezone.now() + timedelta(minutes=10), paused_reason="quota"
    )
    assert "Embedding paused — blocked: quota" in visible_text(curator.get(DASHBOARD, headers=HTMX))


def test_dashboard_warns_past_the_row_alert(curator, library, settings):
    settings.KIOKU_INDEX_ROW_ALERT = 1
    assert "past the alert at 1 (KIOKU_INDEX_ROW_ALERT)" in visible_text(
        curator.get(DASHBOARD, headers=HTMX)
    )


def test_dashboard_of_an_empty_index_says_search_by_meaning_finds_nothing(curator):
    text = visible_text(curator.get(DASHBOARD, headers=HTMX))
    assert "search by meaning finds nothing" in text
    assert "0.0 %" in text


@pytest.mark.parametrize("action", ["rebuild", "clear"])
def test_index_actions_refuse_non_staff(agent, action, library):
    response = agent.post(f"/knowledge/index/{action}/", headers=HTMX)
    assert response.status_code == 403
    assert KnowledgeChunk.objects.filter(embedding__isnull=False).exists()


def test_rebuild_button_reports_and_reloads_the_status(curator, library):
    response = curator.post("/knowledge/index/rebuild/", headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger"] == "index-changed"
    assert f"Rebuilt 2 sources into {KnowledgeChunk.objects.count()} chunks" in visible_text(
        response
    )


def test_clear_button_without_javascript_redirects_with_a_message(curator, library):
    total = KnowledgeChunk.objects.count()
    holding = library["manual"].chunks.count() + 1
    response = curator.post("/knowledge/index/clear/", follow=True)
    assert response.redirect_chain == [(DASHBOARD, 302)]
    assert f"Dropped the vectors of {holding} chunks" in visible_text(response)
    assert KnowledgeChunk.objects.filter(embedding__isnull=False).count() == 0
    assert KnowledgeChunk.objects.count() == total


def test_index_buttons_refuse_get(curator):
    assert curator.get("/knowledge/index/clear/").status_code == 405


# --- In the browser ---------------------------------------------------------------------------


@pytest.mark.browser
def test_a_curator_watches_the_index(logged_in_page, screenshot):
    manual = make_source(uri="kb://manual")
    fake_embed(manual)
    manual.chunks.update(embedding_model=current_embedding_model())
    faq = make_source(text=FAQ_MD, title="Door lock FAQ", source_type="faq", uri="kb://faq")
    fake_embed(faq)  # an older model: owed again
    KnowledgeChunk.objects.filter(pk=faq.chunks.first().pk).update(
        embedding=None, embedding_status=EmbeddingStatus.DEAD, embedding_attempts=5
    )
    manual_count, faq_count = manual.chunks.count(), faq.chunks.count()
    page = logged_in_page

    page.goto(DASHBOARD)

    progress = page.locator("progress.index-bar")
    expect(progress).to_be_visible()
    expected = int(1000 * manual_count / (manual_count + faq_count)) / 10
    expect(progress).to_have_attribute("value", f"{expected:.1f}")
    expect(page.locator(".progress-head")).to_contain_text(
        f"{manual_count} of {manual_count + faq_count} usable chunks"
    )
    dead = page.locator(".stat", has_text="Dead letters")
    expect(dead.get_by_role("link", name="1")).to_have_attribute(
        "href", "/admin/knowledge/knowledgechunk/?embedding_status__exact=dead"
    )
    expect(page.locator(".stat", has_text="Other model")).to_contain_text(str(faq_count - 1))
    expect(page.get_by_role("button", name="Rebuild index")).to_be_visible()
    screenshot(page, "index_status")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Clear vectors").click()
    expect(page.locator("#index-action-result")).to_contain_text(
        f"Dropped the vectors of {manual_count + faq_count} chunks"
    )


def test_dashboard_and_api_show_the_graph_and_ask_for_a_rebuild_when_settings_change(
    curator, api_as, library, settings
):
    built = f"m = {settings.KIOKU_HNSW_M}, ef_construction = {settings.KIOKU_HNSW_EF_CONSTRUCTION}"
    text = visible_text(curator.get(DASHBOARD, headers=HTMX))
    assert f"Vector index graph{built}" in text  # the table's two cells
    assert "vector_index_rebuild" not in text

    settings.KIOKU_HNSW_M = settings.KIOKU_HNSW_M + 8
    text = visible_text(curator.get(DASHBOARD, headers=HTMX))
    assert f"Vector index graph{built}" in text  # what was built, not what is asked
    assert f"a vector index graph with m = {settings.KIOKU_HNSW_M}," in text
    assert "run manage.py vector_index_rebuild" in text
    graph = api_as("read").get("/api/v1/index/status").json()["graph"]
    assert graph["configured"]["m"] == settings.KIOKU_HNSW_M
    assert graph["built"]["m"] == settings.KIOKU_HNSW_M - 8
    assert graph["rebuild_needed"] is True
