"""Writes of the evaluation data: sets, cases and their expected passages.

Every way a case is made (by hand, from an answer, a gap, a card, a retrieval test, an import)
goes through `eval_case_create`, which checks the case and snapshots what it expects."""

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from core.errors import ApiError
from knowledge.models import KnowledgeChunk, KnowledgeSource
from knowledge.text import detect_language
from quality.errors import (
    EVAL_CASE_EMPTY_QUESTION,
    EVAL_CASE_INVALID,
    EVAL_CASE_UNKNOWN_SOURCE,
    EVAL_SET_INVALID_NAME,
)
from quality.models import CaseOrigin, EvalCase, EvalExpected, EvalSet


class EvalError(ApiError):
    """An evaluation set or case the caller must change."""

    status = 422


def eval_set_ensure(*, name: str) -> EvalSet:
    """The set of that name (surrounding spaces ignored), created if there is none."""
    cleaned = name.strip() if isinstance(name, str) else ""
    limit = EvalSet._meta.get_field("name").max_length
    if not cleaned or len(cleaned) > limit:
        raise EvalError(
            EVAL_SET_INVALID_NAME,
            f"An evaluation set needs a name of 1 to {limit} characters.",
            details={"name": name if isinstance(name, str) else None},
        )
    # get_or_create retries the read when a concurrent request created the same name first.
    eval_set, _ = EvalSet.objects.get_or_create(name=cleaned)
    return eval_set


def _invalid(message: str, **details: object) -> EvalError:
    return EvalError(EVAL_CASE_INVALID, message, details=details)


def _string_list(value: list[str] | None, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"{field} must be a list of strings.", field=field)
    return [item.strip() for item in value if item.strip()]


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _expected_checked(
    items: Iterable[dict],
) -> list[tuple[KnowledgeSource, KnowledgeChunk | None, int]]:
    """Each expected item as (source, chunk or None, grade); the same passage twice keeps its
    highest grade."""
    best: dict[tuple[int, int | None], tuple[KnowledgeSource, KnowledgeChunk | None, int]] = {}
    for item in items:
        if not isinstance(item, dict) or not set(item) <= {"source_id", "chunk_id", "grade"}:
            raise _invalid("An expected item is {source_id, chunk_id, grade}.", item=str(item))
        source_id, chunk_id, grade = (
            item.get("source_id"),
            item.get("chunk_id"),
            item.get("grade", 1),
        )
        if not _is_id(source_id) or not (chunk_id is None or _is_id(chunk_id)):
            raise _invalid("source_id and chunk_id must be positive integer ids.", item=str(item))
        if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 3:
            raise _invalid("grade must be 1, 2 or 3.", grade=grade)
        source = KnowledgeSource.objects.filter(pk=source_id).first()
        chunk = (
            KnowledgeChunk.objects.filter(pk=chunk_id, source_id=source_id).first()
            if chunk_id is not None
            else None
        )
        if source is None or (chunk_id is not None and chunk is None):
            raise EvalError(
                EVAL_CASE_UNKNOWN_SOURCE,
                "The expected source or chunk is not stored (deleted, or the chunk belongs to "
                "another source).",
                status=404,
                details={"source_id": source_id, "chunk_id": chunk_id},
            )
        key = (source_id, chunk_id)
        if key not in best or best[key][2] < grade:
            best[key] = (source, chunk, grade)
    return list(best.values())


def _expected_write(
    *, case: EvalCase, source: KnowledgeSource, chunk: KnowledgeChunk | None, grade: int
) -> EvalExpected:
    # The source's title and URI are kept beside the link: a case whose source is deleted still
    # says what it expected. The same passage again updates its grade.
    expected, _ = EvalExpected.objects.update_or_create(
        case=case,
        source=source,
        chunk=chunk,
        defaults={
            "grade": grade,
            "source_title": source.title[:500],
            "source_uri": source.uri[:2000],
            "chunk_ordinal": chunk.ordinal if chunk is not None else None,
        },
    )
    return expected


@transaction.atomic
def eval_expected_add(
    *, case: EvalCase, source_id: int, chunk_id: int | None, grade: int
) -> EvalExpected:
    """One more passage an existing case expects (or a new grade for one it expects)."""
    [(source, chunk, checked_grade)] = _expected_checked(
        [{"source_id": source_id, "chunk_id": chunk_id, "grade": grade}]
    )
    return _expected_write(case=case, source=source, chunk=chunk, grade=checked_grade)


@transaction.atomic
def eval_case_create(
    *,
    eval_set: EvalSet,
    question: str,
    expected: list[dict],
    language: str | None = None,
    tags: list[str] | None = None,
    expected_keywords: list[str] | None = None,
    origin: str = CaseOrigin.MANUAL,
    origin_ref: str = "",
    created_by: str = "",
) -> EvalCase:
    """A case of `eval_set`. Each expected item is {"source_id", "chunk_id" (or None: any chunk
    of the source), "grade" 1–3}; none means the right answer is a refusal. A case with the
    same origin and origin_ref in the set already is returned as it is (one click twice makes
    one case)."""
    question = question.strip() if isinstance(question, str) else ""
    if not question:
        raise EvalError(EVAL_CASE_EMPTY_QUESTION, "A case needs a question.")
    if origin not in CaseOrigin.values:
        raise _invalid(f"Unknown origin {origin!r}.", origin=origin)
    if len(origin_ref) > EvalCase._meta.get_field("origin_ref").max_length:
        raise _invalid("origin_ref is longer than 300 characters.", field="origin_ref")
    if language is not None and (not isinstance(language, str) or not 1 <= len(language) <= 8):
        raise _invalid("language is a code of 1 to 8 characters (en, ja, zh).", language=language)
    tags = _string_list(tags, "tags")
    keywords = _string_list(expected_keywords, "expected_keywords")
    if origin_ref:
        existing = EvalCase.objects.filter(
            eval_set=eval_set, origin=origin, origin_ref=origin_ref
        ).first()
        if existing is not None:
            return existing
    passages = _expected_checked(expected)
    try:
        with transaction.atomic():
            case = EvalCase.objects.create(
                eval_set=eval_set,
                question=question,
                language=language or detect_language(question),
                tags=tags,
                expected_keywords=keywords,
                origin=origin,
                origin_ref=origin_ref,
                created_by=created_by[:200],
            )
    except IntegrityError:
        # A concurrent request made the same case between the read above and this insert.
        return EvalCase.objects.get(eval_set=eval_set, origin=origin, origin_ref=origin_ref)
    for source, chunk, grade in passages:
        _expected_write(case=case, source=source, chunk=chunk, grade=grade)
    return case
