import pytest

pytestmark = pytest.mark.django_db


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


@pytest.mark.browser
def test_a_person_logs_in_and_sees_the_home_page(page, staff_user, screenshot):
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "curator")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Welcome, curator')")
    assert page.locator(".badge-offline").is_visible() or page.locator(".badge-online").is_visible()
    assert page.evaluate("typeof htmx !== 'undefined' && htmx.version") == "2.0.8"
    path = screenshot(page, "home")
    assert path.stat().st_size > 5_000
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
