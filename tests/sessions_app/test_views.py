import pytest
from playwright.sync_api import expect

from knowledge.models import KnowledgeSource
from sessions_app.archiver import session_archive
from sessions_app.models import ChatSession
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def test_pages_need_a_login(client):
    make_session()
    for url in ("/sessions/", "/sessions/discord:support:t-1/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_list_filters_by_status_over_htmx(agent):
    make_session("discord:support:t-1")
    make_session("web:bots", [("bot", True, "ping")])
    session_archive(session_id=ChatSession.objects.get(key="web:bots").pk)

    response = agent.get("/sessions/?status=skipped", headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "web:bots" in body and "discord:support:t-1" not in body
    assert "Only bot messages" in body
    assert "<html" not in body  # the partial only


def test_the_detail_shows_the_archive_status_and_linked_source(agent):
    session = make_session()
    session_archive(session_id=session.pk)
    source = KnowledgeSource.objects.get()

    body = agent.get("/sessions/discord:support:t-1/").content.decode()

    assert ">Archived<" in body
    assert f'href="/knowledge/sources/{source.pk}/"' in body
    assert "Adjusted it and the lock works again" in body
    assert "Archive now" not in body  # agents read, staff act


def test_an_unknown_session_is_a_404_page(agent):
    response = agent.get("/sessions/web:nobody/")

    assert response.status_code == 404
    assert "Session not found" in response.content.decode()


def test_agents_may_not_archive_or_delete(agent):
    make_session()

    assert agent.post("/sessions/discord:support:t-1/archive/").status_code == 403
    assert agent.post("/sessions/discord:support:t-1/delete/").status_code == 403
    assert ChatSession.objects.exists()


def test_staff_delete_removes_the_session_and_its_knowledge(curator):
    session = make_session()
    session_archive(session_id=session.pk)

    response = curator.post("/sessions/discord:support:t-1/delete/")

    assert response.status_code == 302 and response["Location"] == "/sessions/"
    assert not ChatSession.objects.exists() and not KnowledgeSource.objects.exists()


@pytest.mark.browser
def test_a_curator_archives_a_session_from_its_page(logged_in_page, screenshot):
    make_session("discord:support:t-1")  # platform, channel and thread come from the key
    make_session(
        "line:shop-7",
        [("陳小姐", False, "門鎖顯示 E-21，無法開門。"), ("陳小姐", False, "已調整鎖扣板，謝謝！")],
    )
    page = logged_in_page

    page.goto("/sessions/")
    expect(page.locator("#session-table")).to_contain_text("discord:support:t-1")
    expect(page.locator("#session-table")).to_contain_text("陳小姐")
    page.select_option("#id_status", "archived")
    expect(page.locator("#session-table")).to_contain_text("No sessions match these filters.")
    page.select_option("#id_status", "")
    screenshot(page, "session_list")
    page.locator("#session-table").get_by_role("link", name="discord:support:t-1").click()

    expect(page.locator("h1")).to_have_text("discord:support:t-1")
    expect(page.locator(".chat-message")).to_have_count(5)
    page.get_by_role("button", name="Archive now").click()

    expect(page.locator("#archive-result")).to_contain_text("archived")
    expect(page.locator("#session-source")).to_contain_text("Chat discord support t-1")
    path = screenshot(page, "session_detail")
    assert path.stat().st_size > 5_000
