"""SQL pieces every search query uses: the tables, the shown columns, and running a query under
transaction-local settings in one round trip."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.backends.utils import CursorWrapper

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


@dataclass(frozen=True)
class Statement:
    """One query of a round trip: its SQL, parameters and transaction-local settings."""

    sql: str
    params: list
    settings: dict[str, str] = field(default_factory=dict)


# Between the statements of one round trip (no query of ours holds a semicolon).
_SEPARATOR = ";\n"


def fetch_statements(cursor: CursorWrapper, statements: list[Statement]) -> list[list[tuple]]:
    """Run the statements in one round trip, each under its own transaction-local settings: they
    are sent as one multi-statement string (Django binds parameters client-side), which
    PostgreSQL executes as one implicit transaction. Each statement's settings are set before it
    and RESET after it, so they neither reach the next statement nor outlast the string inside a
    caller's transaction. Returns each statement's rows, in order; the cursor is left on the
    last statement's result (its `description`)."""
    parts: list[str] = []
    params: list = []
    for statement in statements:
        if statement.settings:
            parts.append(
                "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in statement.settings)
            )
            params += [item for pair in statement.settings.items() for item in pair]
        parts.append(statement.sql)
        params += statement.params
        parts += [f"RESET {name}" for name in statement.settings]
    cursor.execute(_SEPARATOR.join(parts), params)
    results = []
    for number, statement in enumerate(statements):
        if number:
            cursor.nextset()  # past the previous statement
        if statement.settings:
            cursor.nextset()  # past set_config's row
        results.append(cursor.fetchall())
        if number < len(statements) - 1:
            for _ in statement.settings:
                cursor.nextset()  # past its RESETs
    return results


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


def fetch_after_settings(
    cursor: CursorWrapper, values: dict[str, str], sql: str, params: list
) -> list[tuple]:
    """Run `sql` under transaction-local settings in one round trip (see `fetch_statements`):
    three round trips less than BEGIN, SET LOCAL, query, COMMIT."""
    return fetch_statements(cursor, [Statement(sql, params, values)])[0]


def split_statements(sql: str, params: list) -> list[Statement]:
    """The statements of a string sent by `fetch_statements`, with their settings and
    parameters (for EXPLAIN in tests and benchmarks). Any other string comes back as one."""
    parts = sql.split(_SEPARATOR)
    params = list(params)
    statements: list[Statement] = []
    values: dict[str, str] = {}
    for part in parts:
        count = part.count("%s")
        part_params, params = params[:count], params[count:]
        if part.startswith("SELECT set_config("):
            values = dict(zip(part_params[0::2], part_params[1::2], strict=True))
        elif not part.startswith("RESET "):
            statements.append(Statement(part, part_params, values))
            values = {}
    return statements


def split_settings_statement(
    sql: str, params: list, *, needle: str = ""
) -> tuple[dict[str, str], str, list]:
    """The settings, SQL and parameters of the first statement in `sql` that holds `needle`."""
    statement = next(s for s in split_statements(sql, params) if needle in s.sql)
    return statement.settings, statement.sql, statement.params


def jsonb_value(value: str | dict | None) -> dict:
    # Django's PostgreSQL backend hands raw-cursor jsonb values over as text.
    if isinstance(value, str):
        return json.loads(value)
    return value or {}
