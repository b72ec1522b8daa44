import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_reports_database_pgvector_and_queue(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["reachable"] is True
    assert body["database"]["postgres_version"].split(".")[0] >= "15"
    assert tuple(int(p) for p in body["database"]["pgvector_version"].split(".")[:2]) >= (0, 7)
    assert body["queue"]["reachable"] is True
    assert body["queue"]["broker"] == "orm"


def test_healthz_is_503_with_the_reason_when_the_database_is_down():
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz', HTTP_HOST='127.0.0.1');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # Nothing listens on port 9 of loopback: the connection is refused at once.
        "DATABASE_URL": "postgres://kioku:kioku@127.0.0.1:9/kioku?connect_timeout=2",
        # With DATABASE_URL set this is a deployment, which brings its own key.
        "SECRET_KEY": secrets.token_urlsafe(32),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["body"]["status"] == "unavailable"
    assert answer["body"]["database"]["reachable"] is False
    assert any("database unreachable" in reason for reason in answer["body"]["reasons"])


def test_a_lost_or_refused_connection_counts_as_the_database_unreachable():
    import psycopg
    from django.db import OperationalError

    from core.health import database_unreachable

    lost = OperationalError("terminating connection due to administrator command")
    lost.__cause__ = psycopg.errors.AdminShutdown()
    refused = OperationalError("connection failed: Connection refused")
    refused.__cause__ = psycopg.OperationalError("connection failed")
    assert database_unreachable(lost) and database_unreachable(refused)


def test_a_failed_statement_does_not_count_as_the_database_unreachable():
    import psycopg
    from django.db import OperationalError

    from core.health import database_unreachable

    conflict = OperationalError("could not serialize access")
    conflict.__cause__ = psycopg.errors.SerializationFailure()
    assert not database_unreachable(conflict)
    assert not database_unreachable(ValueError("not a database error"))


class DatabaseGoneOnTheWayOut:
    """Stands for a middleware whose own query fails after the view, as the session middleware's
    save does when the database went away mid-request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import psycopg
        from django.db import OperationalError

        self.get_response(request)
        error = OperationalError("terminating connection due to administrator command")
        raise error from psycopg.errors.AdminShutdown()


@pytest.mark.parametrize(("path", "json"), [("/accounts/login/", False), ("/api/v1/whoami", True)])
@pytest.mark.django_db
def test_a_database_lost_inside_a_middleware_is_a_503_too(client, settings, path, json):
    settings.MIDDLEWARE = [
        "tests.core.test_health.DatabaseGoneOnTheWayOut",
        *settings.MIDDLEWARE,
    ]
    client.raise_request_exception = False
    response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"]
    if json:
        assert response.json()["code"] == "DATABASE_UNAVAILABLE"
    else:
        assert "DATABASE_UNAVAILABLE" in response.content.decode()
