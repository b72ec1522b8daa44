"""The index page's slowest statements (pg_stat_statements), shown to staff beside the index
sizes, on the real server: a statement the test runs is listed with its mean time and calls."""

import re

import pytest
from django.db import connection

from tests.helpers import visible_text

pytestmark = pytest.mark.django_db

DASHBOARD = "/knowledge/index/"
PROBE = "SELECT pg_sleep(0.05) AS kioku_slow_probe"


@pytest.fixture
def recording() -> None:
    """pg_stat_statements recording this database's statements, emptied first."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in cursor.fetchone()[0]:
            pytest.skip(
                "this PostgreSQL server does not preload pg_stat_statements (the embedded one"
                " does after a restart: manage.py kioku_db stop, then start)"
            )
        cursor.execute("SELECT pg_stat_statements_reset()")


def slow_section(response) -> str:
    page = response.content.decode()
    start = page.index('class="card slow-statements"')
    return page[start : page.index("</section>", start)]


def test_staff_see_a_slow_statement_with_its_mean_time_and_calls(curator, recording):
    with connection.cursor() as cursor:
        cursor.execute(PROBE)
        cursor.execute(PROBE)
    section = slow_section(curator.get(DASHBOARD))
    row = next(row for row in section.split("<tr>") if "kioku_slow_probe" in row)
    mean, calls, total = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert float(mean) >= 50 and calls == "2"
    assert "pg_sleep($1) AS kioku_slow_probe" in row


def test_the_slowest_statements_sit_below_the_index_sizes(curator, recording):
    page = curator.get(DASHBOARD).content.decode()
    assert page.index("chunk_search_vector_gin") < page.index("Slowest statements")


def test_people_who_are_not_staff_do_not_see_statements(agent, recording):
    with connection.cursor() as cursor:
        cursor.execute(PROBE)
    page = agent.get(DASHBOARD).content.decode()
    assert "Slowest statements" not in page and "kioku_slow_probe" not in page


def test_without_the_extension_the_page_says_how_to_install_it(curator, recording):
    with connection.cursor() as cursor:
        cursor.execute("DROP EXTENSION pg_stat_statements")  # undone with the test's transaction
    text = visible_text(curator.get(DASHBOARD))
    assert "Slowest statements" in text
    assert "not installed in this database: run CREATE EXTENSION pg_stat_statements" in text


def test_the_status_fragment_polled_every_few_seconds_leaves_the_statements_out(curator):
    response = curator.get(DASHBOARD, headers={"HX-Request": "true"})
    assert "Slowest statements" not in response.content.decode()
