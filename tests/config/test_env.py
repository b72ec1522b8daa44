import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, envbool, envint, envlist


def test_envbool_reads_common_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    assert envbool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "0")
    assert envbool("FLAG", True) is False


def test_envbool_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
        envbool("FLAG", False)


def test_envint_rejects_non_numbers_and_small_values(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        envint("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="N must be ≥ 1"):
        envint("N", 1, minimum=1)


def test_envlist_splits_and_trims(monkeypatch):
    monkeypatch.setenv("HOSTS", " a.example , b.example,,")
    assert envlist("HOSTS", "") == ["a.example", "b.example"]


def test_database_url_is_parsed_with_options():
    db = database_from_url("postgres://ki%40ku:p%2Fss@db.internal:6543/kioku?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "ki@ku",
        "p/ss",
        "db.internal",
        "6543",
        "kioku",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_database_url_may_point_at_a_socket():
    db = database_from_url("postgresql://postgres@/kioku?host=/var/run/postgresql")
    assert db["HOST"] == "/var/run/postgresql"


def test_database_url_must_be_postgres():
    with pytest.raises(ImproperlyConfigured, match="postgres://"):
        database_from_url("mysql://x@y/z")
    with pytest.raises(ImproperlyConfigured, match="must name a database"):
        database_from_url("postgres://x@y/")
