import pytest

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
