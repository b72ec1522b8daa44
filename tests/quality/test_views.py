import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.models import AnswerFeedback, AnswerOutcome
from quality.models import EvalCase, EvalRun, EvalSet
from quality.services import eval_case_create, eval_set_create
from tests.dispatch.factories import make_case
from tests.knowledge.factories import make_answer, make_source

pytestmark = pytest.mark.django_db


def test_the_evaluation_page_lists_sets_for_a_viewer(agent):
    eval_set_create(name="Locks")
    response = agent.get("/quality/")
    assert response.status_code == 200
    assert b"Locks" in response.content
    assert b"New set" not in response.content  # viewers read, curators create


def test_a_viewer_cannot_create_a_set(agent):
    assert agent.post("/quality/sets/", {"name": "Mine"}).status_code == 403
    assert not EvalSet.objects.exists()


def test_a_curator_creates_a_set_and_adds_a_case(curator):
    source = make_source(uri="kb://manual")
    response = curator.post("/quality/sets/", {"name": "Locks"})
    eval_set = EvalSet.objects.get(name="Locks")
    assert response.url == f"/quality/sets/{eval_set.pk}/"
    curator.post(
        f"/quality/sets/{eval_set.pk}/cases/",
        {"question": "E-21?", "source_id": source.pk, "grade": "3", "keywords": "misaligned, door"},
    )
    case = eval_set.cases.get()
    assert case.expected_keywords == ["misaligned", "door"]
    assert case.expected.get().grade == 3
    page = curator.get(f"/quality/sets/{eval_set.pk}/")
    assert "E-21?" in page.content.decode()


def test_a_bad_case_shows_its_error_and_stores_nothing(curator):
    eval_set = eval_set_create(name="Locks")
    response = curator.post(f"/quality/sets/{eval_set.pk}/cases/", {"question": " "}, follow=True)
    assert "EVAL_CASE_EMPTY_QUESTION" in response.content.decode()
    assert not EvalCase.objects.exists()


def test_import_and_export_round_trip_through_the_page(curator):
    make_source(uri="kb://manual")
    eval_set = eval_set_create(name="Locks")
    line = {"question": "E-21?", "expected": [{"source_uri": "kb://manual", "grade": 2}]}
    upload = SimpleUploadedFile("cases.jsonl", (json.dumps(line) + "\n").encode())
    response = curator.post(f"/quality/sets/{eval_set.pk}/import/", {"file": upload}, follow=True)
    assert "Imported 1 case(s)." in response.content.decode()
    exported = curator.get(f"/quality/sets/{eval_set.pk}/export/")
    assert exported["Content-Type"].startswith("application/jsonl")
    [row] = [json.loads(x) for x in exported.content.decode().splitlines()]
    assert row["question"] == "E-21?" and row["expected"][0]["source_uri"] == "kb://manual"


def test_a_bad_import_names_the_line(curator):
    eval_set = eval_set_create(name="Locks")
    upload = SimpleUploadedFile("cases.jsonl", b'{"question": "ok"}\n{oops\n')
    response = curator.post(f"/quality/sets/{eval_set.pk}/import/", {"file": upload}, follow=True)
    assert "Line 2" in response.content.decode()
    assert not EvalCase.objects.exists()


def test_one_click_from_the_feedback_queue_adds_a_draft_case(curator, settings):
    answer = make_answer("How do I pair the app?", feedback=AnswerFeedback.NOT_HELPFUL)
    queue = curator.get("/knowledge/answers/feedback-queue/").content.decode()
    assert f"/quality/cases/from-answer/{answer.pk}/" in queue
    response = curator.post(
        f"/quality/cases/from-answer/{answer.pk}/", {"next": "/knowledge/answers/feedback-queue/"}
    )
    assert response.url == "/knowledge/answers/feedback-queue/"
    case = EvalCase.objects.get()
    assert case.eval_set.name == settings.KIOKU_EVAL_DEFAULT_SET
    assert not case.is_active


def test_one_click_from_the_content_gaps_adds_a_refusal_case(curator):
    make_answer("Do you sell garage doors?", outcome=AnswerOutcome.NO_RELEVANT)
    gaps = curator.get("/knowledge/answers/gaps/").content.decode()
    assert "/quality/cases/from-gap/" in gaps
    curator.post("/quality/cases/from-gap/", {"question": "Do you sell garage doors?"})
    assert EvalCase.objects.get().expects_refusal


def test_one_click_from_a_resolved_card(curator, settings):
    settings.OPENAI_API_KEY = ""
    card = make_case()
    detail = curator.get(f"/dispatch/cases/{card.pk}/").content.decode()
    assert f"/quality/cases/from-card/{card.pk}/" in detail
    curator.post(f"/quality/cases/from-card/{card.pk}/")
    assert EvalCase.objects.get().origin == "card"


def test_an_outside_next_url_is_not_followed(curator):
    answer = make_answer("q?", feedback=AnswerFeedback.NOT_HELPFUL)
    response = curator.post(
        f"/quality/cases/from-answer/{answer.pk}/", {"next": "https://evil.example/"}
    )
    assert response.url == "/knowledge/answers/feedback-queue/"


def test_the_run_button_refuses_an_empty_set(curator):
    eval_set = eval_set_create(name="Empty")
    response = curator.post(f"/quality/sets/{eval_set.pk}/runs/", {"mode": "all"}, follow=True)
    assert "EVAL_RUN_EMPTY_SET" in response.content.decode()
    assert not EvalRun.objects.exists()


def test_runs_compare_side_by_side(curator):
    eval_set = eval_set_create(name="Locks")
    eval_case_create(eval_set=eval_set, question="q")
    metrics = {"hybrid": {"all": {"cases": 1, "recall_at_10": 0.5, "reciprocal_rank": 0.25}}}
    first = EvalRun.objects.create(eval_set=eval_set, status="done", metrics=metrics)
    better = {"hybrid": {"all": {"cases": 1, "recall_at_10": 0.75, "reciprocal_rank": 0.5}}}
    second = EvalRun.objects.create(
        eval_set=eval_set, status="done", metrics=better, use_reranker=True
    )
    page = curator.get(f"/quality/runs/compare/?a={first.pk}&b={second.pk}").content.decode()
    assert "0.250" in page and "0.750" in page
    assert 'class="num up">0.250' in page  # R@10 +0.25


def test_compare_with_bad_ids_is_a_404(curator):
    assert curator.get("/quality/runs/compare/?a=x&b=99999999999999999999").status_code == 404


def test_a_case_is_deactivated_then_deleted_and_runs_keep_their_results(curator):
    from quality.models import EvalResult

    eval_set = eval_set_create(name="Locks")
    case = eval_case_create(eval_set=eval_set, question="q")
    run = EvalRun.objects.create(eval_set=eval_set, status="done")
    EvalResult.objects.create(run=run, case=case, mode="hybrid", question="q", language="en")
    curator.post(f"/quality/cases/{case.pk}/toggle/")
    case.refresh_from_db()
    assert not case.is_active
    curator.post(f"/quality/cases/{case.pk}/delete/")
    assert not EvalCase.objects.exists()
    assert EvalResult.objects.get().case is None
