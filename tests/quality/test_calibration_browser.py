"""Chromium on the calibration page: the charts are drawn under the Content-Security-Policy (the
`page` fixture fails on any violation), one click applies the suggested threshold, and diagnosis
reads it at once."""

import pytest
from playwright.sync_api import expect

from core.models import ThresholdKind
from dispatch.diagnosis import case_threshold
from knowledge.models import AnswerFeedback
from tests.quality.test_calibration import answer_with_best, seed_known_cases

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_dispatcher_applies_the_suggested_case_threshold_in_one_click(
    logged_in_page, settings, screenshot
):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    answer_with_best(0.8, feedback=AnswerFeedback.HELPFUL)  # too few for the ask threshold
    page = logged_in_page

    page.goto("/quality/calibration/")
    cases = page.locator(f"#kind-{ThresholdKind.CASE_SIMILARITY} .calibration-group").first
    chart = cases.locator("svg.calibration-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("title").first).to_contain_text("resolved and escalated or cancelled")
    assert chart.locator("rect.bar-positive").count() == 5
    assert chart.locator("rect.bar-negative").count() == 5
    expect(chart.locator("line.line-suggested")).to_have_count(1)
    expect(cases.locator(".threshold-suggested")).to_contain_text("0.700")
    expect(cases.locator(".threshold-current")).to_contain_text("0.450")
    asks = page.locator(f"#kind-{ThresholdKind.ASK_SIMILARITY} .calibration-group").first
    expect(asks.locator(".no-suggestion")).to_contain_text("1 positive and 0 negative")
    expect(asks.get_by_role("button", name="Apply suggested threshold")).to_have_count(0)
    screenshot(page, "calibration-before")

    cases.get_by_role("button", name="Apply suggested threshold 0.700").click()
    expect(page.locator(".messages")).to_contain_text("Threshold 0.700 applied")
    cases = page.locator(f"#kind-{ThresholdKind.CASE_SIMILARITY} .calibration-group").first
    expect(cases.locator(".threshold-current")).to_contain_text("0.700")
    expect(cases).to_contain_text("The suggestion is in force.")
    expect(page.locator(".calibration-history tbody tr")).to_have_count(1)
    expect(page.locator(".calibration-history")).to_contain_text("in force")
    assert case_threshold("local-hash-v1", brand_key="kagiya") == 0.7
    screenshot(page, "calibration-applied")

    cases.get_by_role("button", name="Reset to default").click()
    expect(page.locator(".messages")).to_contain_text("Back to the default threshold.")
    expect(page.locator(".calibration-history tbody tr")).to_have_count(2)
    assert (
        case_threshold("local-hash-v1")
        == settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE["local-hash-v1"]
    )
