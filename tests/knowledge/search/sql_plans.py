"""Seeing the SQL a search sends and the plan PostgreSQL picks for it."""

from django.db import connection

from knowledge.search.sql import split_settings_statement


def captured_sql(run) -> list[tuple[str, list]]:
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        run()
    return captured


def explain_plan(sql: str, params, *, disable: tuple[str, ...]) -> str:
    _, sql, params = split_settings_statement(sql, params)
    """EXPLAIN with some plan types switched off: on a tiny test table the planner rightly
    prefers them, so this shows the index *can* serve the query, as it will on a real table."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        for setting in ("enable_seqscan", *disable):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("ROLLBACK")
    return plan
