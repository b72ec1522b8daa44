"""Evaluation sets and cases: created by hand, from a not-helpful answer, from a content gap, from
a resolved problem card or from a retrieval test, and imported/exported as JSONL.

A case names what it expects as sources (any chunk counts) or chunks, with a grade 1–3. A case
with nothing expected expects a refusal. A case made from a not-helpful answer starts inactive
(a draft): the passages it should have found are not known until a curator adds them.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from core.errors import ApiError
from knowledge.answer.answering import normalize_question
from knowledge.models import Answer, AnswerFeedback, KnowledgeChunk, KnowledgeSource
from knowledge.text import detect_language
from quality.errors import (
    EVAL_CASE_EMPTY_QUESTION,
    EVAL_CASE_INVALID,
    EVAL_CASE_NOT_ELIGIBLE,
    EVAL_CASE_UNKNOWN_SOURCE,
    EVAL_IMPORT_INVALID_LINE,
    EVAL_SET_INVALID_NAME,
    EVAL_SET_NAME_TAKEN,
)
from quality.models import CaseOrigin, EvalCase, EvalExpected, EvalSet

MAX_QUESTION_CHARS = 2000  # the longest search query (KIOKU_SEARCH_MAX_QUERY_CHARS' default)
MAX_EXPECTED = 20
MAX_KEYWORDS = 10
MAX_TAGS = 10
LANGUAGES = ("en", "ja", "zh")


class EvalError(ApiError):
    """An evaluation set, case or import the caller must change."""

    status = 422


# --- Sets ---------------------------------------------------------------------------------------


def eval_set_create(*, name: str, description: str = "") -> EvalSet:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise EvalError(
            EVAL_SET_INVALID_NAME, "An evaluation set needs a name of 1 to 100 characters."
        )
    try:
        with transaction.atomic():
            return EvalSet.objects.create(name=name, description=description.strip())
    except IntegrityError as exc:
        raise EvalError(
            EVAL_SET_NAME_TAKEN, f"An evaluation set named {name!r} exists.", status=409
        ) from exc


def eval_set_ensure(*, name: str) -> EvalSet:
    """The set of that name, created when missing (the one-click paths use it)."""
    existing = EvalSet.objects.filter(name=name.strip()).first() if isinstance(name, str) else None
    return existing or eval_set_create(name=name)


# --- Cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedRef:
    """What a caller names as expected: ids (pages, API) or a source's URI/title (JSONL)."""

    source_id: int | None = None
    chunk_id: int | None = None
    source_uri: str = ""
    source_title: str = ""
    chunk_ordinal: int | None = None
    grade: int = 1


def _expected_ref(item: object) -> ExpectedRef:
    if isinstance(item, ExpectedRef):
        return item
    if not isinstance(item, dict):
        raise EvalError(EVAL_CASE_INVALID, "Each expected passage is an object.")
    grade = item.get("grade", 1)
    if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 3:
        raise EvalError(EVAL_CASE_INVALID, "grade is an integer from 1 to 3.", details=item)
    ints = {}
    for key in ("source_id", "chunk_id", "chunk_ordinal"):
        value = item.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63
        ):
            raise EvalError(EVAL_CASE_INVALID, f"{key} is a non-negative integer.", details=item)
        ints[key] = value
    texts = {}
    for key in ("source_uri", "source_title"):
        value = item.get(key) or ""
        if not isinstance(value, str):
            raise EvalError(EVAL_CASE_INVALID, f"{key} is text.", details=item)
        texts[key] = value
    return ExpectedRef(**ints, **texts, grade=grade)


def _resolve_expected(ref: ExpectedRef) -> EvalExpected:
    """The stored source (and chunk) a reference names: by chunk id, source id, then URI, then
    title. Unknown → EVAL_CASE_UNKNOWN_SOURCE, naming what was looked for."""
    chunk = None
    source = None
    if ref.chunk_id is not None:
        chunk = KnowledgeChunk.objects.select_related("source").filter(pk=ref.chunk_id).first()
        source = chunk.source if chunk else None
        if source is not None and ref.source_id is not None and source.pk != ref.source_id:
            source = chunk = None  # a chunk of another source than the one named
    elif ref.source_id is not None:
        source = KnowledgeSource.objects.filter(pk=ref.source_id).first()
    elif ref.source_uri:
        source = KnowledgeSource.objects.filter(uri=ref.source_uri).order_by("-id").first()
    if source is None and ref.chunk_id is None and ref.source_title:
        source = KnowledgeSource.objects.filter(title=ref.source_title).order_by("-id").first()
    if source is None:
        raise EvalError(
            EVAL_CASE_UNKNOWN_SOURCE,
            "An expected passage names no stored source or chunk.",
            details={
                key: value
                for key, value in vars(ref).items()
                if value not in (None, "") and key != "grade"
            },
        )
    if chunk is None and ref.chunk_ordinal is not None:
        chunk = source.chunks.filter(ordinal=ref.chunk_ordinal).first()
        if chunk is None:
            raise EvalError(
                EVAL_CASE_UNKNOWN_SOURCE,
                f"{source.title!r} has no chunk {ref.chunk_ordinal}.",
                details={"source_id": source.pk, "chunk_ordinal": ref.chunk_ordinal},
            )
    return EvalExpected(
        source=source,
        chunk=chunk,
        source_title=source.title,
        source_uri=source.uri or "",
        chunk_ordinal=chunk.ordinal if chunk else None,
        grade=ref.grade,
    )


def _strings(value: object, *, name: str, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalError(EVAL_CASE_INVALID, f"{name} is a list of strings.")
    cleaned = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if len(cleaned) > limit or any(len(v) > 100 for v in cleaned):
        raise EvalError(
            EVAL_CASE_INVALID, f"{name}: at most {limit} entries of at most 100 characters."
        )
    return cleaned


@transaction.atomic
def eval_case_create(
    *,
    eval_set: EvalSet,
    question: str,
    expected: Iterable[dict | ExpectedRef] = (),
    language: str | None = None,
    tags: list[str] | None = None,
    expected_keywords: list[str] | None = None,
    origin: str = CaseOrigin.MANUAL,
    origin_ref: str = "",
    created_by: str = "",
    is_active: bool = True,
) -> EvalCase:
    """One case with its expected passages. The same origin (answer, card, gap…) added to the
    same set twice returns the case made the first time."""
    if not isinstance(question, str) or not question.strip():
        raise EvalError(EVAL_CASE_EMPTY_QUESTION, "A case needs a question.")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise EvalError(
            EVAL_CASE_INVALID, f"The question is longer than {MAX_QUESTION_CHARS} characters."
        )
    if language is not None and language not in LANGUAGES:
        raise EvalError(EVAL_CASE_INVALID, "language is en, ja or zh.")
    refs = [_expected_ref(item) for item in expected]
    if len(refs) > MAX_EXPECTED:
        raise EvalError(EVAL_CASE_INVALID, f"At most {MAX_EXPECTED} expected passages.")
    rows = [_resolve_expected(ref) for ref in refs]
    if origin_ref:
        existing = EvalCase.objects.filter(
            eval_set=eval_set, origin=origin, origin_ref=origin_ref[:300]
        ).first()
        if existing:
            return existing
    case = EvalCase.objects.create(
        eval_set=eval_set,
        question=question,
        language=language or detect_language(question),
        tags=_strings(tags, name="tags", limit=MAX_TAGS),
        expected_keywords=_strings(expected_keywords, name="expected_keywords", limit=MAX_KEYWORDS),
        origin=origin,
        origin_ref=origin_ref[:300],
        created_by=created_by[:200],
        is_active=is_active,
    )
    _expected_store(case, rows)
    return case


def _expected_store(case: EvalCase, rows: list[EvalExpected]) -> None:
    """A new case's expected passages, each passage once."""
    merged: dict[tuple, EvalExpected] = {}
    for row in rows:  # the same passage named twice keeps its higher grade
        key = (row.source_id, row.chunk_id)
        if key not in merged or merged[key].grade < row.grade:
            merged[key] = row
    for row in merged.values():
        row.case = case
    EvalExpected.objects.bulk_create(merged.values())


@transaction.atomic
def eval_expected_add(
    *, case: EvalCase, source_id: int, chunk_id: int | None = None, grade: int = 1
) -> EvalExpected:
    """One more passage a case expects (the same passage again takes the new grade). A draft
    case (from a not-helpful answer) becomes active once it expects something."""
    row = _resolve_expected(
        _expected_ref({"source_id": source_id, "chunk_id": chunk_id, "grade": grade})
    )
    expected, _ = EvalExpected.objects.update_or_create(
        case=case,
        source=row.source,
        chunk=row.chunk,
        defaults={
            "grade": row.grade,
            "source_title": row.source_title,
            "source_uri": row.source_uri,
            "chunk_ordinal": row.chunk_ordinal,
        },
    )
    if not case.is_active and case.origin == CaseOrigin.ANSWER:
        case.is_active = True
        case.save(update_fields=["is_active", "updated_at"])
    return expected


def eval_case_unexpect(*, case: EvalCase, expected_id: int) -> EvalCase:
    case.expected.filter(pk=expected_id).delete()
    return case


def eval_case_activate(*, case: EvalCase, is_active: bool) -> EvalCase:
    """An inactive case stays in its set but no run reads it."""
    case.is_active = is_active
    case.save(update_fields=["is_active", "updated_at"])
    return case


def eval_case_delete(*, case: EvalCase) -> None:
    """The case and its expected passages; past runs keep their results (case set to null)."""
    case.delete()


def eval_case_from_answer(*, answer: Answer, eval_set: EvalSet, created_by: str = "") -> EvalCase:
    """One click on the feedback queue: the not-helpful answer's question becomes a draft case
    (inactive) tagged "not-helpful", to be completed with the passages it should have found."""
    if answer.feedback != AnswerFeedback.NOT_HELPFUL:
        raise EvalError(
            EVAL_CASE_NOT_ELIGIBLE, "Only an answer marked not helpful becomes a case this way."
        )
    return eval_case_create(
        eval_set=eval_set,
        question=answer.question,
        language=answer.language,
        tags=["not-helpful"],
        origin=CaseOrigin.ANSWER,
        origin_ref=f"answer:{answer.pk}",
        created_by=created_by,
        is_active=False,
    )


def eval_case_from_gap(
    *, question: str, eval_set: EvalSet, expected: Iterable[dict] = (), created_by: str = ""
) -> EvalCase:
    """A content gap: the question nothing answered. With no passage named it expects a refusal
    until the missing content exists (then add the source that answers it)."""
    return eval_case_create(
        eval_set=eval_set,
        question=question,
        expected=expected,
        tags=["content-gap"],
        origin=CaseOrigin.GAP,
        origin_ref=f"gap:{normalize_question(question)}"[:300],
        created_by=created_by,
    )


def eval_case_from_card(*, card_id: int, eval_set: EvalSet, created_by: str = "") -> EvalCase:
    """A resolved problem card: its text is the question, its case source the expected hit."""
    from dispatch.models import ProblemCard
    from dispatch.services import case_uri

    card = ProblemCard.objects.filter(pk=card_id).first()
    if card is None or not ProblemCard.objects.resolved_cases().filter(pk=card_id).exists():
        raise EvalError(
            EVAL_CASE_NOT_ELIGIBLE,
            "Only a resolved case (enabled, with its resolution) becomes a case this way.",
        )
    source = KnowledgeSource.objects.filter(uri=case_uri(card)).order_by("-id").first()
    if source is None:
        raise EvalError(
            EVAL_CASE_NOT_ELIGIBLE, "The card's case has not been written to the knowledge base."
        )
    question = " ".join(
        part for part in (card.brand, card.lock_model, card.error_code, card.description) if part
    )
    tags = ["case"] + (["error-code"] if card.error_code else [])
    return eval_case_create(
        eval_set=eval_set,
        question=question,
        expected=[{"source_id": source.pk, "grade": 3}],
        tags=tags,
        origin=CaseOrigin.CARD,
        origin_ref=f"card:{card.pk}",
        created_by=created_by,
    )


# --- JSONL --------------------------------------------------------------------------------------


def eval_case_as_dict(case: EvalCase) -> dict:
    """One JSONL line: portable (sources by URI and title) and exact (ids) at once."""
    return {
        "question": case.question,
        "language": case.language,
        "tags": case.tags,
        "expected_keywords": case.expected_keywords,
        "is_active": case.is_active,
        "origin": case.origin,
        "expected": [
            {
                "source_id": row.source_id,
                "source_uri": row.source_uri,
                "source_title": row.source_title,
                "chunk_id": row.chunk_id,
                "chunk_ordinal": row.chunk_ordinal,
                "grade": row.grade,
            }
            for row in case.expected.all()
        ],
    }


def eval_set_export_jsonl(*, eval_set: EvalSet) -> Iterator[str]:
    for case in eval_set.cases.prefetch_related("expected").order_by("id"):
        yield json.dumps(eval_case_as_dict(case), ensure_ascii=False) + "\n"


@dataclass
class ImportResult:
    eval_set: EvalSet
    created: int = 0


@transaction.atomic
def eval_set_import_jsonl(
    *,
    eval_set: EvalSet,
    lines: Iterable[str],
    created_by: str = "",
    origin: str = CaseOrigin.IMPORT,
) -> ImportResult:
    """Every line becomes a case, or nothing is imported: the first bad line is named
    (EVAL_IMPORT_INVALID_LINE with its number and the reason). Expected passages are found by
    URI then title, so a file exported elsewhere imports here; ids are used only when the URI
    is absent (a portable file names sources by URI)."""
    result = ImportResult(eval_set=eval_set)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise EvalError(EVAL_CASE_INVALID, "A line is one JSON object.")
            expected = []
            for ref in item.get("expected") or []:
                if isinstance(ref, dict) and ref.get("source_uri"):
                    ref = {k: v for k, v in ref.items() if k not in ("source_id", "chunk_id")}
                expected.append(ref)
            eval_case_create(
                eval_set=eval_set,
                question=item.get("question"),
                expected=expected,
                language=item.get("language"),
                tags=item.get("tags"),
                expected_keywords=item.get("expected_keywords"),
                origin=origin,
                created_by=created_by,
                is_active=item.get("is_active", True) is not False,
            )
        except (ValueError, EvalError) as exc:
            reason = exc.message if isinstance(exc, EvalError) else f"not JSON ({exc})"
            raise EvalError(
                EVAL_IMPORT_INVALID_LINE,
                f"Line {number}: {reason}",
                details={"line": number, **(getattr(exc, "details", None) or {})},
            ) from exc
        result.created += 1
    return result
