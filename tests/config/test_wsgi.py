"""config/wsgi.py: gunicorn runs no system checks, so the WSGI module runs the security ones."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(32)  # 43 characters; never one written down


def load_wsgi(environ: dict[str, str]) -> subprocess.CompletedProcess:
    """Import config.wsgi as gunicorn does, for a deployment (DATABASE_URL set, DEBUG off)."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env.update(DATABASE_URL="postgres://kioku:kioku@127.0.0.1:9/kioku", **environ)
    return subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_web_server_refuses_to_load_without_a_secret_key():
    result = load_wsgi({})
    assert result.returncode != 0
    assert "(kioku.E004) SECRET_KEY is not set." in result.stderr


def test_web_server_refuses_to_load_with_a_published_key():
    result = load_wsgi({"SECRET_KEY": "change-me"})
    assert result.returncode != 0
    assert "kioku.E004" in result.stderr


def test_web_server_loads_with_a_strong_key():
    result = load_wsgi({"SECRET_KEY": STRONG_KEY})
    assert result.returncode == 0, result.stderr
