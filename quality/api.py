"""The quality app's API: retrieval tests (one query, several search settings side by side)."""

from typing import Literal

from django.http import HttpRequest
from ninja import Router, Status

from core.auth import read_auth
from core.pagination import Page, limit_param, offset_param, page_of
from core.schemas import errors
from quality.models import RetrievalTest
from quality.retrieval import retrieval_test_find, retrieval_test_list, retrieval_test_run
from quality.schemas import RetrievalTestIn, RetrievalTestOut, RetrievalTestPage

router = Router(tags=["quality"])


@router.post(
    "/retrieval-tests",
    response={201: RetrievalTestOut},
    auth=read_auth,
    summary="Compare search settings on one query",
)
def retrieval_test_create(request: HttpRequest, payload: RetrievalTestIn) -> Status[RetrievalTest]:
    """The query searched once per variant (mode, threshold, options), side by side, kept in the
    history the retrieval test page shows. A variant the search refuses (e.g.
    VECTOR_INDEX_NOT_AVAILABLE before anything is embedded) has its error in its column.
    Errors: SEARCH_EMPTY_QUERY, SEARCH_QUERY_TOO_LONG, SEARCH_INVALID_FILTER (400),
    RETRIEVAL_TEST_INVALID (422)."""
    test = retrieval_test_run(
        query=payload.query,
        variants=(
            [variant.model_dump(exclude_none=True) for variant in payload.variants]
            if payload.variants is not None
            else None
        ),
        top_k=payload.top_k,
        filters=payload.filters,
        channel="api",
        api_key=request.auth,
    )
    return Status(201, test)


@router.get(
    "/retrieval-tests",
    response=RetrievalTestPage,
    auth=read_auth,
    summary="List past retrieval tests",
)
def retrieval_test_history(
    request: HttpRequest,
    channel: Literal["web", "api"] | None = None,
    limit: int = limit_param(20, 100),
    offset: int = offset_param(),
) -> Page:
    """Newest first, from the page and the API alike (`channel`: web or api)."""
    return page_of(retrieval_test_list(channel=channel), limit=limit, offset=offset)


@router.get(
    "/retrieval-tests/{test_id}",
    response={200: RetrievalTestOut, **errors(404)},
    auth=read_auth,
    summary="Get a retrieval test",
)
def retrieval_test_get(request: HttpRequest, test_id: int) -> RetrievalTest:
    """Errors: RETRIEVAL_TEST_NOT_FOUND (404)."""
    return retrieval_test_find(test_id=test_id)
