"""KIOKU_DB_TRANSACTION_POOLER on a real PgBouncer (Debian's, started here) in transaction
pooling mode in front of the test run's PostgreSQL: the API tests pass through it.

How the database is set up: a pytest subprocess runs the API tests with DATABASE_URL pointing at
PgBouncer. Django creates its test database through PgBouncer (CREATE DATABASE is one
autocommit statement, which transaction pooling passes through) and migrates it there too. It
could not drop it there: PgBouncer keeps its server connections to that database open in the
pool, and DROP DATABASE refuses a database in use. So the subprocess runs with --reuse-db
(create if missing, never drop), and this test drops the database directly, after PgBouncer
has stopped, with FORCE."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from knowledge.embed.spaces import index_build_settings
from tests.core.engines import Engine, pgbouncer_start

ROOT = Path(__file__).resolve().parents[2]
# The API tests of every app, without the schemathesis fuzzing of tests/api/test_fuzz.py (two
# minutes on its own; it sends the same kinds of queries the tests below send).
API_TESTS = [
    "tests/api/test_edge.py",
    "tests/api/test_findings.py",
    "tests/api/test_throttle.py",
    "tests/api/test_uploads.py",
    "tests/core/test_api.py",
    "tests/knowledge/test_api.py",
    "tests/knowledge/test_api_answers.py",
    "tests/sessions_app/test_api.py",
    "tests/dispatch/test_api.py",
    "tests/dispatch/test_api_orders.py",
    "tests/quality/test_retrieval_api.py",
]


@pytest.fixture
def pgbouncer(django_db_blocker) -> Iterator[tuple[Engine, str, str, str]]:
    """PgBouncer in front of the server this test run uses; yields it, the password of its user,
    that user and the name of the test database to create through it. Afterwards PgBouncer is
    stopped, its folder removed, and that database dropped directly on the server."""
    params = connection.get_connection_params()
    database = f"test_kioku_pgbouncer_{os.getpid()}"
    folder = Path(tempfile.mkdtemp(prefix="kioku-pgbouncer-"))
    engine = None
    try:
        engine, password = pgbouncer_start(
            folder,
            server_host=params.get("host") or "127.0.0.1",
            server_port=int(params.get("port") or 5432),
            server_user=params["user"],
            server_password=params.get("password") or "",
        )
        yield engine, password, params["user"], database
    finally:
        if engine is not None:
            engine.stop()
        shutil.rmtree(folder, ignore_errors=True)
        with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_api_tests_pass_through_pgbouncer_in_transaction_mode(pgbouncer):
    engine, password, user, database = pgbouncer
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST_") and k not in {"DATABASE_URL", "KIOKU_TEST_DB_NAME"}
    }
    env.update(
        DATABASE_URL=f"postgres://{user}:{password}@127.0.0.1:{engine.port}/kioku",
        KIOKU_TEST_DB_NAME=database,
        KIOKU_DB_TRANSACTION_POOLER="true",
        SECRET_KEY=secrets.token_urlsafe(50),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", *API_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout, result.stdout[-2000:]
    # Through PgBouncer: its log has the logins to the test database (the embedded server
    # listens on a Unix socket only, so nothing else answers on that port anyway).
    log = (engine.log.parent / "pgbouncer.log").read_text(errors="replace")
    assert f"db={database} user={user}" in log or f"{database}/{user}" in log, log[-2000:]


def test_index_builds_set_no_session_settings_behind_a_pooler(db, settings):
    settings.KIOKU_DB_TRANSACTION_POOLER = True
    settings.KIOKU_INDEX_BUILD_MEMORY_MB = 123
    with connection.cursor() as cursor:
        cursor.execute("SHOW maintenance_work_mem")
        before = cursor.fetchone()[0]
    with index_build_settings() as cursor:
        cursor.execute("SHOW maintenance_work_mem")
        assert cursor.fetchone()[0] == before != "123MB"


SETTINGS = """
import json
import config.settings as s
db = s.DATABASES["default"]
print(json.dumps([db.get("DISABLE_SERVER_SIDE_CURSORS", False),
                  "prepare_threshold" in db.get("OPTIONS", {}),
                  db.get("OPTIONS", {}).get("prepare_threshold")]))
"""


@pytest.mark.parametrize(
    ("flag", "expected"),
    # Without the flag a URL's own option stays; with it, no server-side cursors and no
    # prepared statements whatever the URL says.
    [("false", [False, True, "5"]), ("true", [True, True, None])],
)
def test_the_pooler_flag_turns_off_server_side_cursors_and_prepared_statements(flag, expected):
    env = {
        **os.environ,
        "KIOKU_DB_TRANSACTION_POOLER": flag,
        "DATABASE_URL": "postgres://kioku:kioku@127.0.0.1:9/kioku?prepare_threshold=5",
        "SECRET_KEY": secrets.token_urlsafe(50),
    }
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
