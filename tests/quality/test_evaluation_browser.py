"""A curator runs an evaluation from the page and reads its metrics, under the CSP."""

import pytest
from playwright.sync_api import expect

from quality.services import eval_case_create, eval_set_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_curator_runs_an_evaluation_and_reads_the_metrics(logged_in_page, embedded_manual):
    eval_set = eval_set_create(name="Manual")
    eval_case_create(
        eval_set=eval_set,
        question="What does E-21 motor overcurrent mean?",
        expected=[{"source_id": embedded_manual.pk, "grade": 3}],
        expected_keywords=["misaligned"],
    )
    eval_case_create(eval_set=eval_set, question="Quelle est la capitale de la Mongolie ?")
    page = logged_in_page
    page.goto("/quality/")
    page.get_by_role("link", name="Manual").click()
    expect(page.locator(".eval-case")).to_have_count(2)
    expect(page.locator(".eval-case").nth(1)).to_contain_text("a refusal is right")
    page.get_by_role("button", name="Run evaluation").click()
    # Tasks run inline in tests: the run is done when its page opens.
    expect(page.locator(".run-status")).to_contain_text("Done")
    hybrid = page.locator('.metrics-table[data-mode="hybrid"] .metrics-row[data-group="all"]')
    expect(hybrid).to_contain_text("1.000")  # recall@1 of the one case with an answer
    answers = page.locator('.metrics-table[data-mode="answer"]')
    expect(answers).to_be_visible()
    expect(page.locator(".result-row")).to_have_count(2 * 4)
    page.goto("/quality/")
    expect(page.locator(".trend-row")).to_have_count(1)
    expect(page.locator(".trend-row")).to_contain_text("local-hash-v1")
