"""Several statements in one round trip, each under its own settings (core/statements.py)."""

import pytest
from django.db import connection

from core.statements import Statement, fetch_statements, split_statements
from tests.knowledge.search.sql_plans import captured_sql

pytestmark = pytest.mark.django_db

STATEMENTS = [
    Statement(
        "SELECT current_setting('enable_seqscan'), current_setting('hnsw.ef_search'), %s::int",
        [1],
        {"enable_seqscan": "off", "hnsw.ef_search": "77"},
    ),
    Statement("SELECT current_setting('enable_seqscan'), %s::text", ["two"]),
    Statement("SELECT %s::int WHERE false", [3], {"enable_sort": "off"}),
]


def _run() -> list[list[tuple]]:
    with connection.cursor() as cursor:
        return fetch_statements(cursor, STATEMENTS)


def test_each_statement_sees_its_own_settings_and_none_outlasts_it():
    rows: list = []
    statements = captured_sql(lambda: rows.extend(_run()))
    assert len(statements) == 1  # one round trip
    assert rows == [[("off", "77", 1)], [("on", "two")], []]
    with connection.cursor() as cursor:  # inside the test's transaction, too
        cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('enable_sort')")
        assert cursor.fetchone() == ("on", "on")


def test_the_string_sent_splits_back_into_its_statements():
    statements = captured_sql(_run)
    assert split_statements(*statements[0]) == STATEMENTS
