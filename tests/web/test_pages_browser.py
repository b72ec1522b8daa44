"""Chromium walks the pages over a library written by someone hostile: under the
Content-Security-Policy nothing is refused (the `page` fixture fails a test on any violation),
the pages still work — htmx, the streamed answer, confirmations, form resets, the admin — and the
hostile markup shows as text: no script ran, no element was made from it."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOWN = '<script>window.__pwned = "script"</script>'


def assert_inert(page) -> None:
    """The hostile markup made no element and ran nothing on this page."""
    assert page.evaluate("window.__pwned") is None, page.url
    inline_script = "script:not([src]):not([type='application/json'])"
    for selector in ("#pwned-img", "#pwned-hx", inline_script, "[onerror]", "[hx-on\\:click]"):
        assert page.locator(selector).count() == 0, (page.url, selector)


def visit(page, path: str, *, shows_hostile_text: bool = True) -> None:
    response = page.goto(path)
    assert response.status == 200, path
    assert "script-src 'self'" in response.headers["content-security-policy"]
    if shows_hostile_text:
        expect(page.locator("main")).to_contain_text(SHOWN)
    assert_inert(page)


def test_the_pages_work_under_the_policy_and_show_hostile_text_as_text(
    logged_in_page, hostile_site
):
    page = logged_in_page
    site = hostile_site
    visit(page, "/", shows_hostile_text=False)

    # Sources: the list, a source, a chunk and its editor.
    visit(page, "/knowledge/sources/")
    visit(page, f"/knowledge/sources/{site.source_id}/")
    visit(page, f"/knowledge/chunks/{site.chunk_id}/")
    visit(page, f"/knowledge/chunks/{site.chunk_id}/edit/")
    # Pasting a text posts over htmx, the source table reloads on the HX-Trigger event and the
    # form empties itself (data-reset-on, in static/js/kioku.js, where hx-on was).
    page.goto("/knowledge/sources/")
    page.fill("#text_text", "# Strike plate\n\nAdjust the strike plate when the bolt rubs.")
    page.fill("#text_title", "Strike plate notes")
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#ingest-result")).to_contain_text("Strike plate notes")
    expect(page.locator("#source-table")).to_contain_text("Strike plate notes")
    expect(page.locator("#text_text")).to_have_value("")
    assert_inert(page)

    # Search as you type: matches marked, everything else text; the score bar is a <meter>.
    page.goto("/knowledge/search/")
    page.fill("#q", "batteries")
    snippet = page.locator(".search-hit-snippet").first
    expect(snippet.locator("mark").first).to_be_visible()
    expect(page.locator(".search-results")).to_contain_text(SHOWN)
    expect(page.locator("meter.score-bar").first).to_be_visible()
    assert page.locator(".search-hit-snippet *:not(mark)").count() == 0
    assert_inert(page)

    # Ask: the answer streams in (offline: extractive, quoting the hostile passage), then the
    # stored answer is swapped in by htmx.
    page.goto("/knowledge/ask/")
    page.fill("#q", "How do I replace the KG-200 batteries?")
    page.click("#ask-submit")
    expect(page.locator("#ask-result .answer[data-answer-id]")).to_be_visible()
    expect(page.locator("#ask-result .answer-text")).to_contain_text("batteries")
    assert_inert(page)
    visit(page, f"/knowledge/answers/{site.answer_id}/")
    visit(page, "/knowledge/answers/feedback-queue/", shows_hostile_text=False)
    visit(page, "/knowledge/answers/gaps/", shows_hostile_text=False)
    visit(page, "/knowledge/index/", shows_hostile_text=False)

    # Sessions: the delete form asks first (data-confirm); declining keeps the session.
    visit(page, "/sessions/", shows_hostile_text=False)
    visit(page, f"/sessions/{site.session_key}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete session and knowledge").click()
    expect(page.locator("main")).to_contain_text(SHOWN)
    assert page.url.endswith(f"/sessions/{site.session_key}/")

    # Dispatch: cases, a resolved hostile case, the board (htmx-polled) and an order.
    visit(page, "/dispatch/cases/", shows_hostile_text=False)
    visit(page, "/dispatch/cases/new/", shows_hostile_text=False)
    visit(page, f"/dispatch/cases/{site.card_id}/")
    visit(page, "/dispatch/orders/", shows_hostile_text=False)
    visit(page, f"/dispatch/orders/{site.order_id}/", shows_hostile_text=False)


def test_the_admin_works_under_the_policy(logged_in_page, staff_user, hostile_site):
    staff_user.is_superuser = True
    staff_user.save()
    page = logged_in_page
    for path in (
        "/admin/",
        "/admin/knowledge/knowledgesource/",
        f"/admin/knowledge/knowledgesource/{hostile_site.source_id}/change/",
        "/admin/knowledge/answer/",
        "/admin/dispatch/problemcard/",
        f"/admin/dispatch/problemcard/{hostile_site.card_id}/change/",
        "/admin/auth/user/add/",
        "/admin/axes/accessattempt/",
    ):
        response = page.goto(path)
        assert response.status == 200, path
        assert_inert(page)
    # The admin's own scripts run: the action bar counts the selected rows.
    page.goto("/admin/knowledge/knowledgesource/")
    page.locator("input.action-select").first.check()
    expect(page.locator(".action-counter")).to_contain_text("1 of")
