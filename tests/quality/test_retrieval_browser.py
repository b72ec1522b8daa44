"""The retrieval test page in Chromium: a query run in two modes shows two columns with the
score of each leg, the settings are there again after a reload, the history lists the test
(and one from the API), and a hit is added as an evaluation case."""

import re

import pytest
from playwright.sync_api import expect

from quality.models import EvalCase
from quality.retrieval import retrieval_test_run
from tests.quality.retrieval_library import make_library

PAGE = "/quality/retrieval/"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_two_modes_side_by_side_remembered_and_a_hit_added_as_a_case(
    logged_in_page, settings, screenshot
):
    settings.OPENAI_API_KEY = ""  # local embeddings
    library = make_library(embedded=True)
    retrieval_test_run(
        query="E-21 from a script", variants=None, top_k=5, filters=None, channel="api"
    )
    page = logged_in_page
    page.goto(PAGE)
    history = page.locator(".retrieval-history-row")
    expect(history.first).to_contain_text("E-21 from a script")
    expect(history.first.locator(".channel-api")).to_be_visible()

    page.select_option("#id_mode_0", "vector")
    page.select_option("#id_mode_1", "keyword")
    page.select_option("#id_mode_2", "")
    page.fill("#id_top_k", "5")
    page.fill("#q", "replace batteries")
    page.click("#retrieval-run")

    columns = page.locator(".retrieval-column")
    expect(columns).to_have_count(2)
    expect(page).to_have_url(re.compile(r"\?test=\d+$"))
    vector, keyword = columns.nth(0), columns.nth(1)
    expect(vector.locator(".retrieval-column-label")).to_have_text("vector")
    expect(keyword.locator(".retrieval-column-label")).to_have_text("keyword")
    expect(vector.locator(".search-hit-title").first).to_have_text("Battery guide")
    expect(vector.locator(".rank-vector").first).to_contain_text(re.compile(r"vector #1 · 0\.\d\d"))
    expect(vector.locator(".rank-keyword")).to_have_count(0)
    expect(keyword.locator(".rank-keyword").first).to_contain_text("keyword #1")
    expect(keyword.locator(".search-hit .score").first).to_have_text(re.compile(r"\d\.\d{4}"))
    expect(history.first).to_contain_text("replace batteries")
    expect(history.first.locator(".channel-web")).to_be_visible()
    screenshot(page, "retrieval-test")

    # The settings are the user's: a fresh visit has them, with an empty query box.
    page.goto(PAGE)
    expect(page.locator("#id_mode_0")).to_have_value("vector")
    expect(page.locator("#id_mode_1")).to_have_value("keyword")
    expect(page.locator("#id_mode_2")).to_have_value("")
    expect(page.locator("#id_top_k")).to_have_value("5")
    expect(page.locator("#q")).to_have_value("")

    # A past test opens from the history, and its hits can become evaluation cases.
    page.locator(".retrieval-history-row a", has_text="replace batteries").click()
    expect(page.locator("#q")).to_have_value("replace batteries")
    hit = page.locator(".retrieval-column").nth(1).locator(".search-hit").first
    hit.locator(".add-case summary").click()
    hit.locator("input[name=new_set]").fill("Battery questions")
    hit.locator("select[name=grade]").select_option("2")
    hit.locator(".add-case-form button").click()
    expect(hit.locator(".add-case-done")).to_contain_text("Added to “Battery questions” as case")

    case = EvalCase.objects.get()
    assert (case.question, case.eval_set.name, case.origin) == (
        "replace batteries",
        "Battery questions",
        "retrieval",
    )
    expected = case.expected.get()
    assert (expected.source, expected.chunk, expected.grade) == (
        library["battery"],
        library["battery"].chunks.get(),
        2,
    )
