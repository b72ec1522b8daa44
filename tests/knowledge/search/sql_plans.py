"""Seeing the SQL a search sends and the plan PostgreSQL picks for it."""

from django.db import connection

from core.statements import split_settings_statement


def captured_sql(run) -> list[tuple[str, list]]:
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        run()
    return captured


def explain_plan(sql: str, params, *, needle: str, disable: tuple[str, ...]) -> str:
    """EXPLAIN of the statement holding `needle`, with some plan types switched off: on a tiny
    test table the planner rightly prefers them, so this shows the index *can* serve the query,
    as it will on a real table."""
    _, sql, params = split_settings_statement(sql, params, needle=needle)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        for setting in ("enable_seqscan", *disable):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("ROLLBACK")
    return plan


def analyzed_plan(sql: str, params, *, needle: str) -> str:
    """EXPLAIN ANALYZE of the statement holding `needle`, under the settings sent with it."""
    values, sql, params = split_settings_statement(sql, params, needle=needle)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        for name, value in values.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("ROLLBACK")
    return plan


def cte_plan(plan: str, name: str) -> str:
    """The part of `plan` that computes the CTE `name` (up to the next node at its depth)."""
    start = plan.index(f"CTE {name}\n")
    line_start = plan.rindex("\n", 0, start) + 1
    depth = start - line_start
    lines = plan[start:].split("\n")
    section = [lines[0]]
    for line in lines[1:]:
        if len(line) - len(line.lstrip()) <= depth:
            break
        section.append(line)
    return "\n".join(section)
