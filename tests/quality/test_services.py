import json

import pytest

from knowledge.models import AnswerFeedback, AnswerOutcome
from quality.errors import (
    EVAL_CASE_EMPTY_QUESTION,
    EVAL_CASE_INVALID,
    EVAL_CASE_NOT_ELIGIBLE,
    EVAL_CASE_UNKNOWN_SOURCE,
    EVAL_IMPORT_INVALID_LINE,
    EVAL_SET_NAME_TAKEN,
)
from quality.models import CaseOrigin, EvalCase, EvalSet
from quality.services import (
    EvalError,
    eval_case_create,
    eval_case_from_answer,
    eval_case_from_card,
    eval_case_from_gap,
    eval_expected_add,
    eval_set_create,
    eval_set_export_jsonl,
    eval_set_import_jsonl,
)
from tests.dispatch.factories import make_card, make_case
from tests.knowledge.factories import make_answer, make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def eval_set():
    return eval_set_create(name="Manual questions")


def test_a_case_by_hand_keeps_its_expected_passages_and_detects_its_language(eval_set):
    source = make_source(uri="kb://manual")
    chunk = source.chunks.order_by("ordinal").last()
    case = eval_case_create(
        eval_set=eval_set,
        question="  電池沒電怎麼辦？ ",
        expected=[{"source_id": source.pk, "grade": 2}, {"chunk_id": chunk.pk, "grade": 3}],
        expected_keywords=["電池", "電池", " "],
        tags=["battery"],
    )
    assert case.question == "電池沒電怎麼辦？"
    assert case.language == "zh"
    assert case.expected_keywords == ["電池"]
    rows = {(row.source_id, row.chunk_id): row for row in case.expected.all()}
    assert rows[(source.pk, None)].grade == 2
    assert rows[(source.pk, chunk.pk)].chunk_ordinal == chunk.ordinal
    assert rows[(source.pk, chunk.pk)].source_title == "KG-200 Manual"
    assert not case.expects_refusal


def test_a_case_without_expected_passages_expects_a_refusal(eval_set):
    case = eval_case_create(eval_set=eval_set, question="What is the price of a Tesla?")
    assert case.expects_refusal


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"question": "  "}, EVAL_CASE_EMPTY_QUESTION),
        ({"question": "x" * 2001}, EVAL_CASE_INVALID),
        ({"question": "q", "language": "fr"}, EVAL_CASE_INVALID),
        ({"question": "q", "expected": [{"source_id": 10**12}]}, EVAL_CASE_UNKNOWN_SOURCE),
        ({"question": "q", "expected": [{"source_id": 1, "grade": 4}]}, EVAL_CASE_INVALID),
        ({"question": "q", "expected": [{"source_id": True}]}, EVAL_CASE_INVALID),
        ({"question": "q", "expected": [{"source_id": 2**63}]}, EVAL_CASE_INVALID),
        ({"question": "q", "tags": "battery"}, EVAL_CASE_INVALID),
    ],
)
def test_a_bad_case_is_refused_with_its_code_and_nothing_stored(eval_set, fields, code):
    with pytest.raises(EvalError) as refused:
        eval_case_create(eval_set=eval_set, **fields)
    assert refused.value.code == code
    assert not EvalCase.objects.exists()


def test_set_names_are_unique(eval_set):
    with pytest.raises(EvalError) as refused:
        eval_set_create(name=" Manual questions ")
    assert refused.value.code == EVAL_SET_NAME_TAKEN
    assert refused.value.status == 409


def test_a_not_helpful_answer_becomes_a_draft_case_once(eval_set):
    answer = make_answer("How do I reset the KG-200?", feedback=AnswerFeedback.NOT_HELPFUL)
    case = eval_case_from_answer(answer=answer, eval_set=eval_set)
    assert (case.question, case.origin, case.origin_ref) == (
        "How do I reset the KG-200?",
        CaseOrigin.ANSWER,
        f"answer:{answer.pk}",
    )
    assert not case.is_active  # the passages it should find are not known yet
    assert eval_case_from_answer(answer=answer, eval_set=eval_set) == case
    assert EvalCase.objects.count() == 1
    source = make_source(uri="kb://manual")
    eval_expected_add(case=case, source_id=source.pk, grade=3)
    case.refresh_from_db()
    assert case.is_active
    assert [row.grade for row in case.expected.all()] == [3]


def test_a_helpful_answer_is_not_a_case(eval_set):
    answer = make_answer("How do I reset?", feedback=AnswerFeedback.HELPFUL)
    with pytest.raises(EvalError) as refused:
        eval_case_from_answer(answer=answer, eval_set=eval_set)
    assert refused.value.code == EVAL_CASE_NOT_ELIGIBLE


def test_a_content_gap_becomes_a_case_that_expects_a_refusal(eval_set):
    make_answer("Do you sell garage doors?", outcome=AnswerOutcome.NO_RELEVANT)
    case = eval_case_from_gap(question="Do you sell garage doors?", eval_set=eval_set)
    assert case.origin == CaseOrigin.GAP
    assert case.tags == ["content-gap"]
    assert case.expects_refusal
    again = eval_case_from_gap(question="do you sell  garage doors?", eval_set=eval_set)
    assert again == case


def test_a_resolved_card_becomes_a_case_expecting_its_own_case_source(eval_set, settings):
    settings.OPENAI_API_KEY = ""
    card = make_case(error_code="E-21")
    case = eval_case_from_card(card_id=card.pk, eval_set=eval_set)
    assert "E-21" in case.question and card.description in case.question
    [expected] = case.expected.all()
    assert expected.source.uri == f"dispatch://problem-cards/{card.pk}"
    assert expected.grade == 3
    assert "error-code" in case.tags


def test_an_open_card_is_not_a_case(eval_set):
    card = make_card()
    with pytest.raises(EvalError) as refused:
        eval_case_from_card(card_id=card.pk, eval_set=eval_set)
    assert refused.value.code == EVAL_CASE_NOT_ELIGIBLE


def test_jsonl_round_trip_keeps_every_case_field(eval_set):
    source = make_source(uri="kb://manual")
    chunk = source.chunks.order_by("ordinal").first()
    eval_case_create(
        eval_set=eval_set,
        question="E-21 on the KG-200?",
        expected=[{"source_id": source.pk, "grade": 3}, {"chunk_id": chunk.pk, "grade": 1}],
        tags=["error-code"],
        expected_keywords=["misaligned"],
    )
    eval_case_create(eval_set=eval_set, question="What does a Tesla cost?", tags=["refusal"])
    exported = list(eval_set_export_jsonl(eval_set=eval_set))
    assert len(exported) == 2
    copy = eval_set_create(name="Copy")
    result = eval_set_import_jsonl(eval_set=copy, lines=exported)
    assert result.created == 2
    assert [json.loads(line) for line in eval_set_export_jsonl(eval_set=copy)] == [
        {**json.loads(line), "origin": "import"} for line in exported
    ]


def test_import_finds_sources_by_uri_then_title(eval_set):
    source = make_source(uri="kb://manual")
    lines = [
        json.dumps(
            {"question": "a", "expected": [{"source_uri": "kb://manual", "source_id": 999999}]}
        ),
        json.dumps(
            {"question": "b", "expected": [{"source_title": "KG-200 Manual", "chunk_ordinal": 0}]}
        ),
    ]
    eval_set_import_jsonl(eval_set=eval_set, lines=lines)
    rows = [case.expected.get() for case in eval_set.cases.order_by("id")]
    assert [row.source_id for row in rows] == [source.pk, source.pk]
    assert rows[1].chunk_id == source.chunks.get(ordinal=0).pk


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("not json", "not JSON"),
        ('["a list"]', "one JSON object"),
        ('{"question": ""}', "needs a question"),
        ('{"question": "q", "expected": [{"source_uri": "kb://nowhere"}]}', "no stored source"),
    ],
)
def test_a_bad_import_line_is_named_and_nothing_is_imported(eval_set, bad_line, reason):
    lines = ['{"question": "fine"}', "", bad_line]
    with pytest.raises(EvalError) as refused:
        eval_set_import_jsonl(eval_set=eval_set, lines=lines)
    assert refused.value.code == EVAL_IMPORT_INVALID_LINE
    assert refused.value.details["line"] == 3
    assert reason in refused.value.message
    assert not EvalSet.objects.get(pk=eval_set.pk).cases.exists()
