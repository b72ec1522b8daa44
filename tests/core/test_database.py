import os

import pytest
from django.db import connections

from core.database import DatabaseCapabilities, database_capabilities, parse_version


def capabilities(available="0.8.0", installed=None, major=17):
    return DatabaseCapabilities(
        postgres_version=f"{major}.2",
        postgres_major=major,
        pgvector_available=available,
        pgvector_installed=installed,
    )


def test_parse_version_reads_dotted_versions():
    assert parse_version("0.8.1") == (0, 8, 1)
    assert parse_version("18.6 (Debian)") == (18, 6)
    assert parse_version(None) is None


def test_missing_pgvector_is_explained():
    assert "not available" in capabilities(available=None).pgvector_problem()


def test_old_pgvector_is_explained():
    problem = capabilities(available="0.6.2").pgvector_problem()
    assert "0.6.2 is too old" in problem and "0.7.0" in problem


def test_installed_version_wins_over_available():
    assert "too old" in capabilities(available="0.8.0", installed="0.5.1").pgvector_problem()


def test_old_postgres_is_explained():
    assert "PostgreSQL 14.2 is too old" in capabilities(major=14).pgvector_problem()


def test_supported_versions_have_no_problem():
    assert capabilities(available="0.7.0").pgvector_problem() is None


@pytest.mark.django_db
def test_the_test_database_has_pgvector_and_pg_trgm_enabled(django_db_blocker):
    from django.db import connection

    assert database_capabilities(connection).pgvector_problem() is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension ORDER BY extname")
        extensions = {row[0] for row in cursor.fetchall()}
    assert {"vector", "pg_trgm"} <= extensions


@pytest.mark.django_db
def test_the_pgvector_system_check_passes_on_a_good_database():
    from core.checks import pgvector_available

    assert pgvector_available(databases=["default"]) == []


def _backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    wrapper.close()  # back to the pool
    return pid


@pytest.mark.django_db
def test_a_forked_child_opens_its_own_pool_and_leaves_the_parents_sessions_alone():
    # As a django-q2 worker forked from the cluster with KIOKU_DB_POOL set: a pool of one
    # connection in the parent, then a query in the child.
    default = connections["default"]
    options = {**default.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1}}
    pooled = type(default)(
        {**default.settings_dict, "CONN_MAX_AGE": 0, "OPTIONS": options}, alias="fork-test"
    )
    try:
        parent_pid = _backend_pid(pooled)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child reports through the pipe)
            code = 1
            try:
                os.write(write, str(_backend_pid(pooled)).encode())
                pooled.close_pool()
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(child, 0)
        child_pid = int(os.read(read, 32) or 0)
        os.close(read)

        assert os.waitstatus_to_exitcode(status) == 0
        assert child_pid not in (0, parent_pid)
        assert _backend_pid(pooled) == parent_pid
    finally:
        pooled.close_pool()


@pytest.mark.django_db(transaction=True)
def test_pg_stat_statements_is_skipped_for_a_role_that_may_not_create_it():
    """As on a managed PostgreSQL where the app's role is no superuser: core's migration goes on,
    in the same transaction, without the extension."""
    import psycopg

    from core.backups import connection_params
    from core.database import pg_stat_statements_install

    params = connection_params(connections["default"])
    database = f"{params['dbname']}_no_stats"
    admin = connections["default"]
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}"')
        cursor.execute(f'CREATE DATABASE "{database}"')
        cursor.execute("DROP ROLE IF EXISTS kioku_app_role")
        cursor.execute("CREATE ROLE kioku_app_role LOGIN NOSUPERUSER")
    try:
        with psycopg.connect(**{**params, "dbname": database, "user": "kioku_app_role"}) as conn:
            assert pg_stat_statements_install(conn) is False
            assert conn.execute("SELECT 1").fetchone() == (1,)  # the transaction goes on
            assert not conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
            ).fetchone()
        with psycopg.connect(**{**params, "dbname": database}) as conn:
            assert pg_stat_statements_install(conn) is True  # a superuser may
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cursor.execute("DROP ROLE IF EXISTS kioku_app_role")
