"""SQL pieces every search query uses: the tables, the shown columns, and running a query under
transaction-local settings in one round trip."""

import json

from django.db.backends.utils import CursorWrapper

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


def fetch_after_settings(
    cursor: CursorWrapper, values: dict[str, str], sql: str, params: list
) -> list[tuple]:
    """Run `sql` under transaction-local settings, in one round trip: the settings and the
    query are sent as one multi-statement string (Django binds parameters client-side), which
    PostgreSQL executes as one implicit transaction, so the settings end with the query. Three
    round trips less than BEGIN, SET LOCAL, query, COMMIT."""
    setting_sql = "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in values) + ";"
    setting_params = [item for pair in values.items() for item in pair]
    # Inside a caller's transaction the local settings would last until it ends: put them back.
    reset_sql = "".join(f"; RESET {name}" for name in values)
    cursor.execute(setting_sql + sql + reset_sql, [*setting_params, *params])
    cursor.nextset()
    return cursor.fetchall()


def split_settings_statement(sql: str, params: list) -> tuple[dict[str, str], str, list]:
    """The parts of a string sent by `fetch_after_settings`: the settings, the query and its
    parameters (for EXPLAIN in tests and benchmarks). Other statements come back unchanged."""
    if not sql.startswith("SELECT set_config("):
        return {}, sql, list(params)
    head, _, rest = sql.partition(";")
    count = head.count("set_config(")
    values = dict(zip(params[0 : 2 * count : 2], params[1 : 2 * count : 2], strict=True))
    return values, rest.split("; RESET ")[0], list(params)[2 * count :]


def jsonb_value(value: str | dict | None) -> dict:
    # Django's PostgreSQL backend hands raw-cursor jsonb values over as text.
    if isinstance(value, str):
        return json.loads(value)
    return value or {}
