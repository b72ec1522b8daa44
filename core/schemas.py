"""API shapes shared by every app: the error body."""

from ninja import Schema


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
