"""API shapes shared by every app: the error body."""

import re
from datetime import UTC, date, datetime
from typing import Annotated

from ninja import Schema
from pydantic import AfterValidator, BeforeValidator


class ErrorOut(Schema):
    """Every error: HTTP status + a stable `code`, a `message` for people, `details` for code."""

    code: str
    message: str
    details: dict
    aliases: list[str] | None = None


def errors(*statuses: int) -> dict[int, type[ErrorOut]]:
    """`response={200: ThingOut, **errors(409)}`: statuses an operation answers besides the
    ones config/api.py documents on every operation (auth, throttling, validation…)."""
    return dict.fromkeys(statuses, ErrorOut)


ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


# JSON's own types in request bodies (and ISO dates in query strings). pydantic's lax mode would take `true` or "6" for an integer
# and a number of seconds for a date; the schema says integer and string, so nothing else passes.
def _json_integer(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    return value


def _iso_text(value: object) -> object:
    # A date or datetime object passes (set in Python); text must start as ISO 8601 does, since
    # pydantic would read "1700000000" as seconds since 1970.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not ISO_DATE_START.match(value):
        raise ValueError("must be an ISO 8601 date string (YYYY-MM-DD…)")
    return value


def _json_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


def utc_datetime(value: datetime) -> datetime:
    """An aware datetime in UTC. PostgreSQL refuses offsets past ±15:59 that ISO 8601 allows
    (a 500 before this), and a moment near year 1 or 9999 may not exist in UTC: ValueError."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1–9999 in UTC") from None


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
JsonFloat = Annotated[float, BeforeValidator(_json_number)]
JsonDateTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(utc_datetime)]
JsonDate = Annotated[date, BeforeValidator(_iso_text)]
