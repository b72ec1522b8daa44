"""Several SQL statements in one round trip, each under its own transaction-local settings (search
sends its vector and keyword queries this way, a session append its upsert, insert and context
read), and splitting such a string back into its statements for EXPLAIN in tests and benchmarks."""

from dataclasses import dataclass, field

from django.db.backends.utils import CursorWrapper


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
