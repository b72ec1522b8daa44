import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from knowledge.models import Answer
from knowledge.queries import content_gaps
from quality.errors import EVAL_RUN_EMPTY_SET, EVAL_RUN_INVALID_MODE
from quality.models import EvalResult, RunStatus
from quality.runs import (
    eval_run_create,
    eval_run_execute,
    index_settled_wait,
    keywords_found,
    run_modes,
)
from quality.services import EvalError, eval_case_create, eval_set_create
from tests.knowledge.factories import ZH, make_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def manual_set(embedded_manual):
    from knowledge.embed.pipeline import embedding_run

    faq = make_source(text=ZH, title="FAQ (zh)", uri="kb://faq-zh")
    embedding_run()
    eval_set = eval_set_create(name="Manual")
    eval_case_create(
        eval_set=eval_set,
        question="What does E-21 motor overcurrent mean?",
        expected=[{"source_id": embedded_manual.pk, "grade": 3}],
        expected_keywords=["misaligned"],
    )
    eval_case_create(
        eval_set=eval_set,
        question="電池沒電怎麼辦？",
        expected=[{"source_id": faq.pk, "grade": 3}],
    )
    eval_case_create(eval_set=eval_set, question="Quelle est la capitale de la Mongolie ?")
    return eval_set


def test_a_run_scores_every_mode_and_checks_the_answers(manual_set):
    run = eval_run_create(eval_set=manual_set, modes=run_modes("all"))
    run = eval_run_execute(run_id=run.pk)
    assert run.status == RunStatus.DONE
    assert run.case_count == 3
    assert run.done_count == 3 * 3 + 3
    assert run.config["embedding_model"] == "local-hash-v1"
    for mode in ("vector", "keyword", "hybrid"):
        assert run.metrics[mode]["all"]["cases"] == 2  # the refusal case has nothing to find
    hybrid = run.metrics["hybrid"]
    assert hybrid["all"]["recall_at_10"] == 1.0
    assert hybrid["all"]["reciprocal_rank"] == 1.0
    assert set(hybrid) == {"all", "en", "zh"}
    answers = run.metrics["answer"]["all"]
    assert answers["cases"] == 3
    assert answers["refusal_ok"] == 1.0
    assert answers["keywords_ok"] == 1.0
    assert answers["citations_valid"] == 1.0
    refusal = EvalResult.objects.get(run=run, mode="answer", question__contains="Mongolie")
    assert refusal.refusal_ok is True and refusal.keywords_ok is None


def test_answers_asked_by_a_run_stay_out_of_the_content_gaps(manual_set):
    run = eval_run_create(eval_set=manual_set, modes=["hybrid"])
    eval_run_execute(run_id=run.pk)
    assert Answer.objects.filter(channel="eval").count() == 3
    assert Answer.objects.filter(channel="eval", outcome="no_relevant").exists()
    assert content_gaps() == []


def test_a_result_keeps_the_ranked_hits_with_their_grades(manual_set, embedded_manual):
    run = eval_run_execute(run_id=eval_run_create(eval_set=manual_set, modes=["keyword"]).pk)
    result = EvalResult.objects.filter(run=run, mode="keyword", language="en").first()
    assert result.first_relevant_rank == 1
    assert result.hits[0]["source_id"] == embedded_manual.pk
    assert result.hits[0]["grade"] == 3
    assert result.latency_ms > 0


def test_a_refused_search_is_a_result_with_its_code_not_a_failed_run(embedded_manual, settings):
    eval_set = eval_set_create(name="Long")
    eval_case_create(eval_set=eval_set, question="battery " * 200)
    settings.KIOKU_SEARCH_MAX_QUERY_CHARS = 100
    run = eval_run_execute(run_id=eval_run_create(eval_set=eval_set, modes=["hybrid"]).pk)
    assert run.status == RunStatus.DONE
    assert {r.error_code for r in run.results.all()} == {"SEARCH_QUERY_TOO_LONG"}


def test_a_set_without_active_cases_cannot_run():
    eval_set = eval_set_create(name="Empty")
    with pytest.raises(EvalError) as refused:
        eval_run_create(eval_set=eval_set)
    assert refused.value.code == EVAL_RUN_EMPTY_SET


def test_unknown_modes_are_refused():
    with pytest.raises(EvalError) as refused:
        run_modes("semantic")
    assert refused.value.code == EVAL_RUN_INVALID_MODE


def test_keywords_are_matched_case_and_width_insensitively():
    found = keywords_found(
        "Ｅ－２１ means the door is MISALIGNED.", ["e-21", "misaligned", "torque"]
    )
    assert found == ["e-21", "misaligned"]


def test_a_queued_run_waits_for_pending_embeddings():
    make_source(uri="kb://pending")  # ingested, not embedded (no embedding on write in tests)
    assert index_settled_wait(max_seconds=0, poll_seconds=0) is False


def test_the_command_prints_the_metrics_table(manual_set, capsys):
    call_command("evaluate", "--set", "Manual", "--mode", "hybrid")
    out = capsys.readouterr()
    assert "R@10" in out.out and "nDCG@10" in out.out
    assert "hybrid  all" in out.out
    assert "6/6" in out.err  # the progress bar: 3 searches and 3 answers


def test_the_command_names_an_unknown_set(db):
    with pytest.raises(CommandError, match="No evaluation set named 'Nope'"):
        call_command("evaluate", "--set", "Nope")


def test_a_run_with_the_reranker_needs_one_configured(manual_set, settings):
    settings.KIOKU_RERANKER = ""
    with pytest.raises(EvalError) as refused:
        eval_run_create(eval_set=manual_set, use_reranker=True)
    assert refused.value.code == "EVAL_RUN_NO_RERANKER"


def test_runs_with_and_without_the_reranker_record_which_ran(manual_set, settings, openai_stub):
    settings.KIOKU_RERANKER = "http"
    settings.KIOKU_RERANK_URL = openai_stub.base_url
    with_reranker = eval_run_execute(
        run_id=eval_run_create(
            eval_set=manual_set, modes=["hybrid"], use_reranker=True, check_answers=False
        ).pk
    )
    without = eval_run_execute(
        run_id=eval_run_create(eval_set=manual_set, modes=["hybrid"], check_answers=False).pk
    )
    assert with_reranker.config["reranker"] == "http"
    assert without.config["reranker"] == ""
    assert openai_stub.rerank_requests == 3  # one per case of the run with it, none without
    assert with_reranker.metrics["hybrid"]["all"]["recall_at_10"] == 1.0


def test_runs_with_and_without_outcome_feedback_show_its_effect(settings):
    """A passage the outcomes raised climbs to first place in the run with feedback; the run
    without it ranks as before, and the comparison shows the difference."""
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from knowledge.feedback import chunk_feedback_apply
    from knowledge.models import FeedbackReason
    from knowledge.search.service import chunk_search
    from quality.queries import runs_compare
    from tests.knowledge.factories import BATTERY, E21

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_source(text=BATTERY, title="Battery guide", uri="kb://battery")
    make_source(text=E21, title="Troubleshooting", uri="kb://e21")
    embedding_run()
    query = "E-21 strike plate batteries"
    first, second = chunk_search(query, mode="hybrid", top_k=5).hits[:2]
    eval_set = eval_set_create(name="Feedback")
    eval_case_create(
        eval_set=eval_set,
        question=query,
        expected=[{"chunk_id": second.chunk_id, "grade": 3}],
    )
    settings.KIOKU_FEEDBACK_WEIGHT = (
        first.score - second.score + 0.001
    ) / settings.KIOKU_FEEDBACK_STEP
    chunk_feedback_apply(
        chunk_ids=[second.chunk_id], reason=FeedbackReason.ORDER_FIX_MATCHED, origin_ref="order:1"
    )
    options = {"eval_set": eval_set, "modes": ["hybrid"], "check_answers": False}
    without = eval_run_execute(run_id=eval_run_create(**options, use_feedback=False).pk)
    with_feedback = eval_run_execute(run_id=eval_run_create(**options).pk)
    assert without.metrics["hybrid"]["all"]["reciprocal_rank"] == 0.5
    assert with_feedback.metrics["hybrid"]["all"]["reciprocal_rank"] == 1.0
    assert without.config["feedback_weight"] == 0.0
    mrr = next(row for row in runs_compare(without, with_feedback) if row["metric"] == "MRR")
    assert mrr["delta"] == 0.5


def test_the_daily_schedule_delivered_twice_queues_one_run_per_set():
    from quality.models import EvalRun
    from quality.tasks import eval_runs_scheduled

    eval_set = eval_set_create(name="Nightly")
    eval_set.is_scheduled = True
    eval_set.save(update_fields=["is_scheduled"])
    eval_case_create(eval_set=eval_set, question="What does E-21 mean?")
    first = eval_runs_scheduled()
    assert len(first) == 1
    assert eval_runs_scheduled() == []  # the same day's task again: no second run
    assert EvalRun.objects.filter(eval_set=eval_set, triggered_by="schedule").count() == 1
