"""The database stopped under a running web server (gunicorn), then started again.

A PostgreSQL of its own (an embedded instance in a temporary data folder), so stopping it
leaves the server the rest of the suite uses alone. The web server reaches it through
DATABASE_URL, as a deployment does: the embedded backend would restart a stopped server on the
next query by itself.
"""

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import ROOT, wait_until

pytestmark = pytest.mark.faults

SETUP = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from core.services import api_key_create

user = get_user_model().objects.create_user("curator", password="x-correct-horse", is_staff=True)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
_, key = api_key_create(name="fault", scopes=["read"])
print(json.dumps({"key": key, "session": session.session_key}))
"""

SERVER = """
import json
from config import embedded_db
server = embedded_db.ensure_running()
print(json.dumps({"socket_dir": server.socket_dir, "port": server.port, "user": server.user}))
"""


@dataclass
class Site:
    port: int
    key: str
    session: str
    embedded_env: dict[str, str]

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def api(self, path: str) -> tuple[int, dict[str, str], dict]:
        status, headers, body = self.get(path, Authorization=f"Bearer {self.key}")
        return status, headers, json.loads(body)

    def page(self, path: str) -> tuple[int, str]:
        status, _, body = self.get(path, Cookie=f"sessionid={self.session}")
        return status, body.decode()

    def database(self, action: str) -> None:
        run([sys.executable, "manage.py", "kioku_db", action], self.embedded_env)


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def site() -> Iterator[Site]:
    """gunicorn on a PostgreSQL of its own, migrated, with an API key and a logged-in session."""
    # Not pytest's tmp_path: its root is mode 0700, which the server's system user (when the
    # tests run as root) cannot traverse.
    parent = ROOT / ".data" / "test-tmp"
    parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(dir=parent))
    embedded_env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "XDG_RUNTIME_DIR", "KIOKU_DB_NAME", "KIOKU_TEST_DB_NAME"}
    }
    embedded_env.update(KIOKU_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    process = None
    try:
        run([sys.executable, "manage.py", "migrate", "-v0"], embedded_env)
        server = json.loads(run([sys.executable, "-c", SERVER], embedded_env))
        web_env = {
            **embedded_env,
            "DATABASE_URL": (
                f"postgres://{server['user']}@:{server['port']}/kioku"
                f"?host={server['socket_dir']}&connect_timeout=3"
            ),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "OPENAI_API_KEY": "",
        }
        made = json.loads(run([sys.executable, "-c", SETUP], web_env))
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
             "--log-level", "warning"],
            cwd=ROOT, env=web_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        site = Site(port, made["key"], made["session"], embedded_env)

        def answers() -> bool:
            assert process.poll() is None, "gunicorn exited"
            try:
                return site.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout=60, message="gunicorn did not answer")
        yield site
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        subprocess.run(
            [sys.executable, "manage.py", "kioku_db", "stop"],
            cwd=ROOT, env=embedded_env, capture_output=True, timeout=120,
        )  # fmt: skip
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_stopped_database_is_a_503_with_a_code_and_the_site_recovers(site):
    assert site.api("/api/v1/sources")[0] == 200
    assert site.page("/")[0] == 200

    site.database("stop")

    status, _, body = site.get("/healthz")
    assert status == 503
    health = json.loads(body)
    assert health["status"] == "unavailable" and health["database"]["reachable"] is False

    status, headers, error = site.api("/api/v1/sources")
    assert status == 503
    assert error["code"] == "DATABASE_UNAVAILABLE"
    assert set(error) == {"code", "message", "details"} and error["message"]
    assert headers["Retry-After"].isdigit()

    status, html = site.page("/")
    assert status == 503
    assert "DATABASE_UNAVAILABLE" in html and "temporarily unavailable" in html

    site.database("start")

    wait_until(lambda: site.get("/healthz")[0] == 200, timeout=30, message="no recovery")
    assert site.api("/api/v1/sources")[0] == 200
    assert site.page("/")[0] == 200
