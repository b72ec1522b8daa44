"""Retrieval tests: one query searched side by side under several settings ("variants": a mode,
a similarity threshold, search options), each column the search service's own answer or its
error, kept as history; the test page's settings kept per user; a hit turned into an
evaluation case.

The search service (knowledge.search.service.chunk_search) owns what a search may be: a bad
threshold, an index without vectors or a provider down fail that one column, as they would
fail that search. Only errors about the query itself (empty, too long) or the filters, which
every column shares, stop the test before anything is stored.
"""

import inspect
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from core.errors import ApiError
from core.models import ApiKey
from core.pagination import BIGINT_MAX
from knowledge.errors import SEARCH_EMPTY_QUERY, SEARCH_QUERY_TOO_LONG
from knowledge.search.base import MODES, SearchError, SearchFilters, SearchHit, validate_top_k
from knowledge.search.filters import parse_filters
from knowledge.search.service import chunk_search
from quality.errors import (
    RETRIEVAL_HIT_NOT_FOUND,
    RETRIEVAL_OPTION_UNAVAILABLE,
    RETRIEVAL_TEST_INVALID,
    RETRIEVAL_TEST_NOT_FOUND,
)
from quality.models import (
    CaseOrigin,
    EvalCase,
    EvalSet,
    RetrievalTest,
    RetrievalTestPreference,
)
from quality.services import eval_case_create, eval_expected_add, eval_set_ensure

RETRIEVAL_MAX_VARIANTS = 4
RETRIEVAL_MAX_TOP_K = 50
RETRIEVAL_HISTORY_SIZE = 50
CHANNELS = ("web", "api")
# Search options a variant may set besides mode and threshold. Each is passed to chunk_search
# under its own name once chunk_search takes a keyword of that name (the reranker and the
# outcome feedback arrive with their own changes); until then a variant setting one shows
# RETRIEVAL_OPTION_UNAVAILABLE in its column.
SEARCH_OPTIONS = ("rerank", "use_feedback")
VARIANT_KEYS = {"mode", "min_similarity", *SEARCH_OPTIONS}
DEFAULT_VARIANTS = ({"mode": "hybrid"}, {"mode": "vector"}, {"mode": "keyword"})
DEFAULT_TOP_K = 10
# Errors about the query, the same in every column: the test cannot run at all.
QUERY_ERRORS = {SEARCH_EMPTY_QUERY, SEARCH_QUERY_TOO_LONG}


class RetrievalTestError(ApiError):
    """Settings of a retrieval test the caller must change."""

    status = 422


@dataclass(frozen=True)
class RetrievalConfig:
    """Checked settings: `filters` as given (stored), `search_filters` as the search reads them."""

    variants: list[dict]
    top_k: int
    filters: dict
    search_filters: SearchFilters

    def stored(self) -> dict:
        return {"variants": self.variants, "top_k": self.top_k, "filters": self.filters}


def search_options_available() -> tuple[str, ...]:
    """The options of SEARCH_OPTIONS this build's chunk_search takes."""
    parameters = inspect.signature(chunk_search).parameters
    return tuple(option for option in SEARCH_OPTIONS if option in parameters)


def _invalid(message: str, **details: object) -> RetrievalTestError:
    return RetrievalTestError(RETRIEVAL_TEST_INVALID, message, details=details)


def _variant_checked(variant: object, index: int) -> dict:
    """A variant's shape: a known mode, a number or null threshold, booleans for options. The
    threshold's range is the search's rule (SEARCH_INVALID_THRESHOLD in that column)."""
    if not isinstance(variant, dict):
        raise _invalid("Each variant is an object {mode, min_similarity, …}.", variant=index)
    unknown = sorted(set(variant) - VARIANT_KEYS)
    if unknown:
        raise _invalid(
            f"Unknown variant setting(s) {unknown}; use {', '.join(sorted(VARIANT_KEYS))}.",
            variant=index,
        )
    mode = variant.get("mode", "hybrid")
    if mode not in MODES:
        raise _invalid(f"Unknown mode {mode!r}; use {', '.join(MODES)}.", variant=index)
    checked: dict[str, Any] = {"mode": mode, "min_similarity": None}
    threshold = variant.get("min_similarity")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise _invalid("min_similarity must be a number or null.", variant=index)
        checked["min_similarity"] = float(threshold)
    for option in SEARCH_OPTIONS:
        value = variant.get(option)
        if value is not None:
            if not isinstance(value, bool):
                raise _invalid(f"{option} must be true, false or null.", variant=index)
            checked[option] = value
    return checked


def retrieval_config_check(
    *, variants: list[dict] | None, top_k: int, filters: dict | None
) -> RetrievalConfig:
    """The one check of a retrieval test's settings, for a run and for saved preferences.
    No variants means the default three columns (hybrid, vector, keyword)."""
    if variants is None:
        variants = [dict(variant) for variant in DEFAULT_VARIANTS]
    if not isinstance(variants, list) or not 1 <= len(variants) <= RETRIEVAL_MAX_VARIANTS:
        raise _invalid(f"Give 1 to {RETRIEVAL_MAX_VARIANTS} variants.", field="variants")
    checked = [_variant_checked(variant, index) for index, variant in enumerate(variants)]
    top_k = validate_top_k(
        top_k, maximum=RETRIEVAL_MAX_TOP_K, error=RetrievalTestError, code=RETRIEVAL_TEST_INVALID
    )
    search_filters = parse_filters(filters)  # SearchError SEARCH_INVALID_FILTER (400)
    kept = {key: value for key, value in (filters or {}).items() if value not in (None, "", [])}
    return RetrievalConfig(
        variants=checked, top_k=top_k, filters=kept, search_filters=search_filters
    )


def variant_label(variant: dict) -> str:
    """A column's heading: "hybrid", "vector · ≥ 0.3 · rerank"."""
    parts = [variant["mode"]]
    if variant.get("min_similarity") is not None:
        parts.append(f"≥ {variant['min_similarity']:g}")
    if variant.get("rerank") is not None:
        parts.append("rerank" if variant["rerank"] else "no rerank")
    if variant.get("use_feedback") is not None:
        parts.append("feedback" if variant["use_feedback"] else "no feedback")
    return " · ".join(parts)


def _hit_summary(hit: SearchHit) -> dict:
    """What a column keeps of a hit: everything the search page shows, not the chunk's text."""
    return {
        "chunk_id": hit.chunk_id,
        "source_id": hit.source_id,
        "source_title": hit.source_title,
        "source_type": hit.source_type,
        "source_uri": hit.source_uri,
        "location": hit.location,
        "pinned": hit.pinned,
        "snippet": hit.snippet,
        "score": hit.score,
        "vector_rank": hit.vector_rank,
        "vector_score": hit.vector_score,
        "keyword_rank": hit.keyword_rank,
        "keyword_score": hit.keyword_score,
    }


def _column_run(query: str, variant: dict, config: RetrievalConfig) -> dict:
    column: dict[str, Any] = {
        "label": variant_label(variant),
        "variant": variant,
        "error": None,
        "hits": [],
        "took_ms": 0.0,
        "model": "",
        "offline": False,
        "degraded": False,
        "degraded_reason": "",
    }
    available = search_options_available()
    missing = [option for option in SEARCH_OPTIONS if option in variant and option not in available]
    if missing:
        column["error"] = {
            "code": RETRIEVAL_OPTION_UNAVAILABLE,
            "message": f"This search has no {' or '.join(missing)} option yet.",
            "details": {"options": missing},
            "status": 422,
        }
        return column
    options = {option: variant[option] for option in SEARCH_OPTIONS if option in variant}
    try:
        result = chunk_search(
            query,
            mode=variant["mode"],
            top_k=config.top_k,
            filters=config.search_filters,
            min_similarity=variant["min_similarity"],
            **options,
        )
    except SearchError as exc:
        if exc.code in QUERY_ERRORS:
            raise
        column["error"] = {**exc.body(), "status": exc.status}
        return column
    column.update(
        hits=[_hit_summary(hit) for hit in result.hits],
        took_ms=round(result.took_ms, 2),
        model=result.model,
        offline=result.offline,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason,
    )
    return column


def retrieval_test_run(
    *,
    query: str,
    variants: list[dict] | None,
    top_k: int,
    filters: dict | None,
    channel: str,
    user: AbstractBaseUser | None = None,
    api_key: ApiKey | None = None,
) -> RetrievalTest:
    """Search `query` once per variant and keep the columns: `results` is {"columns": [{label,
    variant, hits, took_ms, model, offline, degraded, degraded_reason, error}]} in the variants'
    order. A variant the search refuses has its error (code, message, details, status) in its
    column; an empty or too long query, bad filters or bad settings raise and store nothing."""
    if channel not in CHANNELS:
        raise ValueError(f"channel is web or api, not {channel!r}")
    config = retrieval_config_check(variants=variants, top_k=top_k, filters=filters)
    columns = [_column_run(query, variant, config) for variant in config.variants]
    return RetrievalTest.objects.create(
        query=query,
        config=config.stored(),
        results={"columns": columns},
        channel=channel,
        user=user if user is not None and user.is_authenticated else None,
        api_key=api_key,
    )


def retrieval_test_list(*, channel: str | None = None) -> QuerySet[RetrievalTest]:
    """Past tests, newest first, with who ran them."""
    tests = RetrievalTest.objects.select_related("user", "api_key")
    return tests.filter(channel=channel) if channel else tests


def retrieval_test_find(*, test_id: int) -> RetrievalTest:
    # An id past PostgreSQL's bigint would be a database error, not "no such test".
    test = retrieval_test_list().filter(pk=test_id).first() if 0 < test_id <= BIGINT_MAX else None
    if test is None:
        raise RetrievalTestError(
            RETRIEVAL_TEST_NOT_FOUND, f"No retrieval test {test_id}.", status=404
        )
    return test


def retrieval_preference_get(*, user: AbstractBaseUser) -> dict:
    """The user's last settings ({variants, top_k, filters}), or the defaults."""
    saved = RetrievalTestPreference.objects.filter(user=user).values_list("config", flat=True)
    config = {
        "variants": [dict(variant) for variant in DEFAULT_VARIANTS],
        "top_k": DEFAULT_TOP_K,
        "filters": {},
    }
    for stored in saved:
        try:
            # Settings saved by an older build may no longer pass: then the defaults.
            config = retrieval_config_check(
                variants=stored.get("variants"),
                top_k=stored.get("top_k", DEFAULT_TOP_K),
                filters=stored.get("filters"),
            ).stored()
        except (ApiError, AttributeError):
            pass
    return config


def retrieval_preference_save(
    *, user: AbstractBaseUser, variants: list[dict] | None, top_k: int, filters: dict | None
) -> RetrievalTestPreference:
    config = retrieval_config_check(variants=variants, top_k=top_k, filters=filters)
    preference, _ = RetrievalTestPreference.objects.update_or_create(
        user=user, defaults={"config": config.stored()}
    )
    return preference


def retrieval_test_hit(*, test: RetrievalTest, chunk_id: int) -> dict:
    """The hit summary of `chunk_id` in any column of `test`."""
    for column in test.results.get("columns", []):
        for hit in column.get("hits", []):
            if hit.get("chunk_id") == chunk_id:
                return hit
    raise RetrievalTestError(
        RETRIEVAL_HIT_NOT_FOUND,
        "That chunk is not among this test's hits.",
        status=404,
        details={"test_id": test.pk, "chunk_id": chunk_id},
    )


@transaction.atomic
def retrieval_hit_case_add(
    *,
    test: RetrievalTest,
    chunk_id: int,
    eval_set: EvalSet | str,
    grade: int,
    created_by: str = "",
) -> tuple[EvalCase, bool]:
    """The test's query as a case of `eval_set` (a set, or the name of one made if missing)
    expecting this hit's chunk (grade 1–3). A set has one case per question: a case already
    asking the same question gets the hit added to what it expects (or its grade changed).
    Returns the case and whether it is new; nothing is written when it fails."""
    hit = retrieval_test_hit(test=test, chunk_id=chunk_id)
    if isinstance(eval_set, str):
        eval_set = eval_set_ensure(name=eval_set)
    expected = {"source_id": hit["source_id"], "chunk_id": hit["chunk_id"], "grade": grade}
    existing = (
        EvalCase.objects.select_for_update()
        .filter(eval_set=eval_set, question=test.query.strip())
        .order_by("id")
        .first()
    )
    if existing is None:
        case = eval_case_create(
            eval_set=eval_set,
            question=test.query,
            expected=[expected],
            origin=CaseOrigin.RETRIEVAL_TEST,
            origin_ref=f"test:{test.pk}",
            created_by=created_by,
        )
        return case, True
    eval_expected_add(
        case=existing, source_id=hit["source_id"], chunk_id=hit["chunk_id"], grade=grade
    )
    return existing, False
