"""The demo evaluation set (quality/demo_data/eval_cases.jsonl): its shape, its spread over
languages and kinds of question, and that every passage it expects is in the demo data."""

import json
from collections import Counter
from pathlib import Path

import pytest
from django.db import transaction

import dispatch.demo
import knowledge.demo
from knowledge.models import KnowledgeSource
from quality.demo import demo_case_sources

EVAL_CASES = Path(__file__).resolve().parents[2] / "quality" / "demo_data" / "eval_cases.jsonl"
CASE_KEYS = {"question", "language", "tags", "expected_keywords", "expected"}
EXPECTED_KEYS = {"source_uri", "source_title", "chunk_ordinal", "grade"}
DEMO_CASE = "demo-case:"  # the dispatch demo's n-th resolved card (quality/demo.py)


def eval_cases() -> list[dict]:
    lines = EVAL_CASES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_line_is_a_case_in_the_import_format():
    for case in eval_cases():
        assert set(case) == CASE_KEYS, case["question"]
        assert case["question"].strip()
        assert case["language"] in {"en", "ja", "zh"}
        assert case["tags"] and all(isinstance(tag, str) for tag in case["tags"])
        assert all(isinstance(word, str) and word for word in case["expected_keywords"])
        for item in case["expected"]:
            assert set(item) == EXPECTED_KEYS, case["question"]
            assert item["grade"] in {1, 2, 3}
            assert item["chunk_ordinal"] is None or item["chunk_ordinal"] >= 0


def test_the_set_covers_three_languages_error_codes_paraphrases_and_refusals():
    cases = eval_cases()
    languages = Counter(case["language"] for case in cases)
    tags = Counter(tag for case in cases for tag in case["tags"])
    assert len(cases) >= 40
    # Roughly a third each.
    assert all(languages[language] >= len(cases) // 4 for language in ("en", "ja", "zh"))
    assert tags["error-code"] >= 10 and tags["paraphrase"] >= 10
    assert tags["cross-language"] >= 6
    refusals = [case for case in cases if not case["expected"]]
    assert len(refusals) >= 3
    assert all("refusal" in case["tags"] and not case["expected_keywords"] for case in refusals)
    # Every answerable case has the passage that answers it, and a keyword to check.
    for case in cases:
        if case["expected"]:
            assert any(item["grade"] == 3 for item in case["expected"]), case["question"]
            assert case["expected_keywords"], case["question"]
    assert len({case["question"] for case in cases}) == len(cases)


@pytest.fixture
def demo_sources(settings):
    """The knowledge and dispatch demos loaded as `./scripts/run` loads them; the cases name the
    resolved demo cards as `demo-case:<n>` (cases.json order, from 1)."""
    settings.OPENAI_API_KEY = ""
    for module in (knowledge.demo, dispatch.demo):
        with transaction.atomic():
            module.demo_load()
    return {source.uri: source for source in KnowledgeSource.objects.all()} | demo_case_sources()


@pytest.mark.django_db(transaction=True)
def test_every_expected_passage_is_in_the_demo_data(demo_sources):
    for case in eval_cases():
        grade_3_text = ""
        for item in case["expected"]:
            source = demo_sources.get(item["source_uri"])
            assert source is not None, item["source_uri"]
            if not item["source_uri"].startswith(DEMO_CASE):
                assert source.title == item["source_title"]
            chunks = source.chunks.order_by("ordinal")
            if item["chunk_ordinal"] is not None:
                chunks = chunks.filter(ordinal=item["chunk_ordinal"])
            assert chunks.exists(), item
            if item["grade"] == 3:
                grade_3_text += " ".join(chunks.values_list("content", flat=True)).lower()
        # The keywords a correct answer must contain come from the passage that answers it.
        for word in case["expected_keywords"]:
            assert word.lower() in grade_3_text, (case["question"], word)


@pytest.mark.django_db(transaction=True)
def test_the_demo_loads_the_set_with_its_card_cases_and_queues_a_first_run(settings):
    from core.demo import demo_load_if_empty
    from quality.models import EvalRun, EvalSet

    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBED_ON_WRITE = (
        True  # embedded as ingested (tasks run inline), as the worker would
    )
    settings.KIOKU_EVAL_WAIT_FOR_INDEX_SECONDS = 0
    lines = demo_load_if_empty()
    assert any(line.startswith("quality: 1 evaluation set") for line in lines), lines
    eval_set = EvalSet.objects.get()
    assert eval_set.is_scheduled
    assert eval_set.cases.count() == len(eval_cases()) + 6
    assert eval_set.cases.filter(origin="card").count() == 6
    assert not any("left out" in line for line in lines)
    # Tasks run inline in tests: the first run ran when the demo's transaction committed.
    run = EvalRun.objects.get()
    assert run.status == "done", run.error
    assert run.metrics["hybrid"]["all"]["recall_at_10"] > 0.5
