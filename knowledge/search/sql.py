"""SQL pieces every search query uses: the tables, the shown columns, and sending a search's
statements with the check of the active embedding space in one round trip."""

import json
from collections.abc import Callable

from django.db.backends.utils import CursorWrapper

from core.statements import Statement, fetch_statements
from knowledge.embed.spaces import (
    ACTIVE_SPACE_SQL,
    VectorSpace,
    active_space_cached,
    active_space_confirm,
)
from knowledge.models import (
    KnowledgeChunk,
    KnowledgeSource,
)

CHUNK = KnowledgeChunk._meta.db_table


SOURCE = KnowledgeSource._meta.db_table


SELECT_COLUMNS = (
    "c.id, c.content, c.location, c.pinned, s.id AS source_id, s.title, s.source_type, s.uri, "
    "c.feedback_boost"
)


def fetch_in_active_space(
    cursor: CursorWrapper, statements_for: Callable[[VectorSpace], list[Statement]]
) -> tuple[VectorSpace, list[list[tuple]]]:
    """The rows of `statements_for(space)`, for the active embedding space, in one round trip.

    `space` is the active space as this process last saw it; ACTIVE_SPACE_SQL goes with the
    statements, so a cutover since (by any process) is noticed in the same round trip, and the
    statements are planned and sent again for the new space. This saves reading the space
    before every search (0.6 ms through the ORM, BENCHMARKS.md)."""
    for attempt in (1, 2):
        space = active_space_cached(cursor)
        try:
            statements = [Statement(ACTIVE_SPACE_SQL, []), *statements_for(space)]
        except Exception:
            # Planning for an outdated space can fail (its provider needs a key no longer
            # set): the error is the answer only if the space is still the active one.
            cursor.execute(ACTIVE_SPACE_SQL)
            if active_space_confirm(cursor.fetchall()) or attempt == 2:
                raise
            continue
        rows = fetch_statements(cursor, statements)
        # Two cutovers between two round trips do not happen: the second run keeps its rows.
        if active_space_confirm(rows[0]) or attempt == 2:
            return space, rows[1:]
    raise AssertionError("unreachable")


def jsonb_value(value: str | dict | None) -> dict:
    # Django's PostgreSQL backend hands raw-cursor jsonb values over as text.
    if isinstance(value, str):
        return json.loads(value)
    return value or {}
