"""The API's one page shape: `{"count", "limit", "offset", "items"}` (limit/offset paging)."""

from collections.abc import Sequence
from typing import Any, TypedDict

from django.db.models import QuerySet
from ninja import Schema


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
