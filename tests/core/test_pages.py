import re
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from django.test import Client
from playwright.sync_api import Page, expect
from pytest_django.fixtures import Settings

from core.queries import DispatchFigures, StatusCount
from knowledge.embed.pipeline import pipeline_pause
from knowledge.models import (
    AnswerFeedback,
    AnswerOutcome,
    EmbeddingPipelineState,
    KnowledgeSource,
    SourceStatus,
)
from tests.dispatch.factories import make_card
from tests.helpers import visible_text
from tests.knowledge.factories import make_answer, make_source
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db


def dashboard_html(response: HttpResponse) -> str:
    """The dashboard's panels: the page between the offline notice and "For programs"."""
    page = response.content.decode()
    return page[page.index('<div class="dashboard">') : page.index("For programs")]


def panel(response: HttpResponse, name: str) -> str:
    page = dashboard_html(response)
    start = page.index(f'id="panel-{name}"')
    return page[start : page.find("</section>", start)]


def test_home_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_home_shows_navigation_and_the_offline_badge(client, staff_user, settings):
    settings.OPENAI_API_KEY = ""
    client.force_login(staff_user)
    html = client.get("/").content.decode()
    for label in ("Search", "Ask", "Sources", "Index", "Cases", "Dispatch", "Sessions"):
        assert f">{label}<" in html
    assert "offline mode" in html


def test_online_mode_shows_the_chat_model_instead(client, staff_user, settings):
    settings.OPENAI_API_KEY = "sk-test"
    client.force_login(staff_user)
    html = client.get("/").content.decode()
    assert "offline mode" not in html
    assert f"online · {settings.KIOKU_CHAT_MODEL}" in html


def test_every_page_sends_the_csrf_token_with_htmx_requests(client, staff_user):
    client.force_login(staff_user)
    html = client.get("/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert "vendor/htmx-2.0.8.min.js" in html


def test_home_shows_a_panel_for_each_part_of_the_work(curator: Client) -> None:
    html = dashboard_html(curator.get("/"))
    for heading in ("Knowledge", "Questions", "Embedding pipeline", "Chat sessions", "Dispatch"):
        assert f">{heading}</h2>" in html


def test_home_does_not_list_internal_tables(curator: Client) -> None:
    make_source()
    text = visible_text(curator.get("/"))
    for table in (
        "What is stored",
        "Embedding dues",
        "Embedding pipeline states",
        "Embedding spaces",
        "Dead letters (embedding)",
        "Answer sources",
        "Messages",
    ):
        assert table not in text


def test_home_figures_are_the_rows_stored(curator: Client) -> None:
    failed = make_source(uri="kb://broken")
    KnowledgeSource.objects.filter(pk=failed.pk).update(status=SourceStatus.FAILED)
    make_source(text="# Pump\n\nPrime the pump before the first start.\n", uri="kb://pump")
    make_answer("What is the capital of France?", outcome=AnswerOutcome.NO_RELEVANT)
    make_answer("How do I replace the batteries?", feedback=AnswerFeedback.NOT_HELPFUL)
    make_session("discord:support:t-1")
    make_session("discord:support:t-2")
    response = curator.get("/")

    knowledge = panel(response, "knowledge")
    assert '<a href="/knowledge/sources/">2</a>' in knowledge
    assert 'href="/knowledge/sources/?status=failed">1 failed</a>' in knowledge
    assert 'href="/knowledge/sources/?status=pending">1 pending</a>' in knowledge
    questions = panel(response, "questions")
    assert re.search(
        r'Asked today</dt>\s*<dd class="stat-value">(<a [^>]+>)?2(</a>)?</dd>', questions
    )
    assert '<a href="/knowledge/answers/gaps/">1</a>' in questions
    assert '<a href="/knowledge/answers/feedback-queue/">1</a>' in questions
    assert '<a href="/sessions/?status=active">2</a>' in panel(response, "sessions")
    pipeline = panel(response, "pipeline")
    assert "Running" in pipeline and "No pipeline error recorded." in pipeline


def test_every_link_on_the_dashboard_opens_a_page(curator: Client) -> None:
    make_source()
    make_session()
    make_answer("What is the capital of France?", outcome=AnswerOutcome.NO_RELEVANT)
    links = set(re.findall(r'href="([^"]+)"', dashboard_html(curator.get("/"))))

    assert {
        "/knowledge/sources/",
        "/knowledge/sources/?status=ready",
        "/knowledge/index/",
        "/knowledge/answers/gaps/",
        "/knowledge/answers/feedback-queue/",
        "/sessions/",
        "/sessions/?status=active",
    } <= links
    for link in links:
        url = link.replace("&amp;", "&")
        assert curator.get(url).status_code == 200, url


def test_todays_questions_open_in_the_admin_on_the_local_day(
    curator: Client, staff_user: User, settings: Settings
) -> None:
    settings.TIME_ZONE = "Asia/Tokyo"
    staff_user.user_permissions.add(Permission.objects.get(codename="view_answer"))
    make_answer("What does E-21 mean?")
    link = re.search(r'href="(/admin/knowledge/answer/[^"]+)"', dashboard_html(curator.get("/")))

    admin = curator.get(link.group(1).replace("&amp;", "&")).content.decode()

    assert "What does E-21 mean?" in admin


def test_without_the_admin_right_todays_questions_are_not_a_link(agent: Client) -> None:
    make_answer("What does E-21 mean?")
    questions = panel(agent.get("/"), "questions")
    assert "/admin/" not in questions
    assert re.search(r'Asked today</dt>\s*<dd class="stat-value">1</dd>', questions)


def test_a_paused_pipeline_shows_why_and_its_last_error_in_the_site_time_zone(
    curator: Client, settings: Settings
) -> None:
    settings.TIME_ZONE = "Asia/Tokyo"
    pipeline_pause(reason="blocked: quota", error="429 You exceeded your current quota")
    state = EmbeddingPipelineState.objects.get()
    response = curator.get("/")

    pipeline = panel(response, "pipeline")
    assert "Paused" in pipeline and "blocked: quota" in pipeline
    tokyo = state.paused_until.astimezone(ZoneInfo("Asia/Tokyo"))
    assert f">{tokyo:%Y-%m-%d %H:%M}</time>" in pipeline
    assert "429 You exceeded your current quota" in pipeline
    assert "times in Asia/Tokyo" in response.content.decode()


def test_dispatch_panel_counts_the_open_problem_cards(curator: Client) -> None:
    make_card()
    make_card(description="Second report.")
    dispatch = panel(curator.get("/"), "dispatch")
    assert "not set up" not in dispatch
    assert '<a href="/dispatch/cases/">2</a></dd>' in dispatch  # the count links to the cases
    assert "0 created" in dispatch


def test_dispatch_panel_shows_the_figures_once_dispatch_provides_them(
    curator: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = DispatchFigures(
        open_problem_cards=4,
        orders_by_status=[StatusCount("scheduled", "Scheduled", 3), StatusCount("done", "Done", 9)],
    )
    monkeypatch.setattr("core.queries.dispatch_figures", lambda: figures)

    dispatch = panel(curator.get("/"), "dispatch")

    assert "not set up" not in dispatch
    assert '<a href="/dispatch/cases/">4</a></dd>' in dispatch
    assert "3 scheduled" in dispatch and "9 done" in dispatch


@pytest.mark.browser
def test_a_lead_opens_the_dashboard_and_follows_a_figure(
    logged_in_page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    make_source(uri="kb://manual")
    make_session("discord:support:t-1")
    make_answer("What is the capital of France?", outcome=AnswerOutcome.NO_RELEVANT)
    pipeline_pause(reason="blocked: quota", error="429 You exceeded your current quota")
    page = logged_in_page

    page.goto("/")

    for heading in ("Knowledge", "Questions", "Embedding pipeline", "Chat sessions", "Dispatch"):
        expect(page.get_by_role("region", name=heading)).to_be_visible()
    expect(page.locator("#panel-dispatch")).to_contain_text("Open problem cards")
    path = screenshot(page, "home_dashboard")
    assert path.stat().st_size > 5_000
    unanswered = page.locator("#panel-questions .figure", has_text="Unanswered")
    unanswered.get_by_role("link", name="1", exact=True).click()
    page.wait_for_url("**/knowledge/answers/gaps/")
    expect(page.locator("h1")).to_have_text("Content gaps")
    expect(page.locator(".gap-question")).to_contain_text("What is the capital of France?")


@pytest.mark.browser
def test_a_person_logs_in_and_sees_the_home_page(page, staff_user, screenshot):
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "curator")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Welcome, curator')")
    # htmx is a deferred script: it runs once the whole page is parsed, which the heading's
    # appearing does not mean on a busy machine.
    page.wait_for_load_state("domcontentloaded")
    assert page.locator(".badge-offline").is_visible() or page.locator(".badge-online").is_visible()
    assert page.evaluate("typeof htmx !== 'undefined' && htmx.version") == "2.0.8"
    path = screenshot(page, "home")
    assert path.stat().st_size > 5_000
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
