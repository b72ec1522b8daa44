"""core/checks.py: the secret-key check (kioku.E004). The pgvector checks are tested with the
database capabilities in test_database.py."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from core.checks import PUBLISHED_SECRET_KEYS, secret_key_strong

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(32)  # 43 characters; never one written down


def error_ids(settings, *, key: str, debug: bool) -> list[str]:
    settings.DEBUG = debug
    settings.SECRET_KEY = key
    return [message.id for message in secret_key_strong()]


def test_check_refuses_a_missing_key_without_debug(settings):
    assert error_ids(settings, key="", debug=False) == ["kioku.E004"]


@pytest.mark.parametrize("key", sorted(PUBLISHED_SECRET_KEYS))
def test_check_refuses_the_keys_published_with_kioku_without_debug(settings, key):
    assert error_ids(settings, key=key, debug=False) == ["kioku.E004"]


def test_check_refuses_a_key_made_by_djangos_startproject_without_debug(settings):
    key = "django-insecure-" + STRONG_KEY
    assert error_ids(settings, key=key, debug=False) == ["kioku.E004"]


def test_check_refuses_a_short_key_without_debug(settings):
    assert error_ids(settings, key=STRONG_KEY[:31], debug=False) == ["kioku.E004"]


def test_check_refuses_a_key_of_few_different_characters_without_debug(settings):
    assert error_ids(settings, key="abcd" * 20, debug=False) == ["kioku.E004"]


def test_check_says_what_is_wrong_and_how_to_mend_it(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "change-me"
    (error,) = secret_key_strong()
    assert error.msg == "SECRET_KEY is a default published with Kioku."
    assert "secrets.token_urlsafe" in error.hint


def test_check_accepts_a_strong_key_without_debug(settings):
    assert error_ids(settings, key=STRONG_KEY, debug=False) == []


def test_check_accepts_a_32_character_hex_key(settings):
    assert error_ids(settings, key="0123456789abcdef" * 2, debug=False) == []


def test_check_accepts_the_old_development_key_with_debug(settings):
    key = "kioku-insecure-development-key-change-me"
    assert error_ids(settings, key=key, debug=True) == []


def test_check_accepts_the_key_a_local_instance_makes(settings, tmp_path, monkeypatch):
    from config import embedded_db

    monkeypatch.setenv("KIOKU_DATA_DIR", str(tmp_path))
    assert error_ids(settings, key=embedded_db.local_secret_key(), debug=False) == []


def manage_check(environ: dict[str, str]) -> subprocess.CompletedProcess:
    """`manage.py check` as a deployment runs it: DATABASE_URL set (nothing listens there; the
    check needs no connection), DEBUG off."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env.update(DATABASE_URL="postgres://kioku:kioku@127.0.0.1:9/kioku", **environ)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_deployment_without_a_secret_key_refuses_to_run():
    result = manage_check({})
    assert result.returncode != 0
    assert "(kioku.E004) SECRET_KEY is not set." in result.stderr


def test_a_deployment_with_the_old_compose_default_refuses_to_run():
    result = manage_check({"SECRET_KEY": "change-me"})
    assert result.returncode != 0
    assert "(kioku.E004) SECRET_KEY is a default published with Kioku." in result.stderr


def test_a_deployment_with_a_strong_key_runs():
    result = manage_check({"SECRET_KEY": STRONG_KEY})
    assert result.returncode == 0, result.stderr
