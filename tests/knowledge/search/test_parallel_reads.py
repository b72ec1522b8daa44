"""Hybrid search's side connections (knowledge/search/parallel_reads.py): a persistent
connection is checked as a request's would be, but not pinged before every query."""

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

from knowledge.search import parallel_reads

pytestmark = pytest.mark.django_db(transaction=True)


def _read() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def _fail() -> None:
    raise RuntimeError("the query failed")


@pytest.fixture
def pings(monkeypatch, settings):
    if (
        not connection.settings_dict["CONN_HEALTH_CHECKS"]
        or not connection.settings_dict["CONN_MAX_AGE"]
    ):
        pytest.skip("pooled connections are not kept by the workers")
    parallel_reads.shutdown()  # workers started afresh, with one thread
    settings.KIOKU_SEARCH_SIDE_WORKERS = 1
    seen: list[bool] = []
    real = DatabaseWrapper.is_usable

    def counted(self) -> bool:
        seen.append(True)
        return real(self)

    monkeypatch.setattr(DatabaseWrapper, "is_usable", counted)
    yield seen
    parallel_reads.shutdown()


def test_a_busy_worker_pings_its_connection_at_most_every_few_seconds(pings, monkeypatch):
    for _ in range(5):
        assert parallel_reads.submit(_read).result() == 1
    assert len(pings) <= 1  # the first query's connection is new: nothing to check
    monkeypatch.setattr(parallel_reads, "CHECK_SECONDS", 0.0)
    for _ in range(3):
        parallel_reads.submit(_read).result()
    assert len(pings) >= 3  # checked before each query once the interval has passed


def test_after_a_failed_query_the_next_one_checks_its_connection(pings):
    parallel_reads.submit(_read).result()
    before = len(pings)
    with pytest.raises(RuntimeError):
        parallel_reads.submit(_fail).result()
    parallel_reads.submit(_read).result()
    assert len(pings) == before + 1
