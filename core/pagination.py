"""The API's one page shape: `{"count", "limit", "offset", "items"}` (limit/offset paging)."""

from collections.abc import Sequence
from typing import Any, TypedDict

from django.db.models import QuerySet
from ninja import Query, Schema

# PostgreSQL's bigint: the largest id or version a request can name.
BIGINT_MAX = 2**63 - 1
# The furthest a page may start. Past any table Kioku keeps (the row alert is 500,000) and far
# inside PostgreSQL's bigint OFFSET, which a larger number overflows (a 500, before this bound).
OFFSET_MAX = 1_000_000_000


def limit_param(default: int, maximum: int) -> Any:
    """The `limit` query parameter of a list endpoint: 1–maximum items per page."""
    return Query(default, ge=1, le=maximum, description=f"Items per page, 1–{maximum}.")


def offset_param() -> Any:
    """The `offset` query parameter of a list endpoint: 0–OFFSET_MAX items skipped."""
    return Query(0, ge=0, le=OFFSET_MAX, description="Items to skip.")


class PageOut(Schema):
    """The page shape in the API's schemas: subclasses add `items: list[ItemOut]`."""

    count: int
    limit: int
    offset: int


class Page(TypedDict):
    count: int
    limit: int
    offset: int
    items: list[Any]


def page_of(
    rows: QuerySet | Sequence, *, limit: int, offset: int, count: int | None = None
) -> Page:
    """One page of `rows`. Pass `count` when it is already known (saves a COUNT query)."""
    if count is None:
        count = rows.count() if isinstance(rows, QuerySet) else len(rows)
    return {
        "count": count,
        "limit": limit,
        "offset": offset,
        "items": list(rows[offset : offset + limit]),
    }
