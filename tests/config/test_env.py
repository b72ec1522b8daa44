from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, envbool, envchoice, envdecimal, envint, envlist


def test_envbool_reads_common_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    assert envbool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "0")
    assert envbool("FLAG", True) is False


def test_envbool_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
        envbool("FLAG", False)


def test_envchoice_reads_one_of_its_choices_and_rejects_the_rest(monkeypatch):
    choices = ("local-hash-v1", "local-use-m3")
    assert envchoice("MODEL", "local-hash-v1", choices) == "local-hash-v1"
    monkeypatch.setenv("MODEL", " local-use-m3 ")
    assert envchoice("MODEL", "local-hash-v1", choices) == "local-use-m3"
    monkeypatch.setenv("MODEL", "local-bert")
    with pytest.raises(
        ImproperlyConfigured, match="MODEL must be one of local-hash-v1, local-use-m3"
    ):
        envchoice("MODEL", "local-hash-v1", choices)


def test_envint_rejects_non_numbers_and_small_values(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        envint("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="N must be ≥ 1"):
        envint("N", 1, minimum=1)


def test_envdecimal_reads_an_exact_decimal(monkeypatch):
    monkeypatch.setenv("RATE", " 0.05 ")
    assert envdecimal("RATE", Decimal("0.1")) == Decimal("0.05")
    assert str(envdecimal("RATE", Decimal("0.1"))) == "0.05"  # not 0.05000000000000000277
    monkeypatch.setenv("RATE", "")
    assert envdecimal("RATE", Decimal("0.1")) == Decimal("0.1")


@pytest.mark.parametrize("raw", ["five percent", "NaN", "Infinity", "0,05"])
def test_envdecimal_rejects_what_is_not_a_decimal(monkeypatch, raw):
    monkeypatch.setenv("RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="RATE must be a decimal number"):
        envdecimal("RATE", Decimal("0.05"))


def test_envdecimal_rejects_values_out_of_range_or_with_too_many_places(monkeypatch):
    monkeypatch.setenv("RATE", "1.5")
    with pytest.raises(ImproperlyConfigured, match="RATE must be between 0 and 1"):
        envdecimal("RATE", Decimal("0.05"), minimum=Decimal("0"), maximum=Decimal("1"))
    monkeypatch.setenv("RATE", "0.12345")
    with pytest.raises(ImproperlyConfigured, match="at most 4 digits"):
        envdecimal("RATE", Decimal("0.05"), places=4)


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
