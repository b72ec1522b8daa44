"""Shared by the HTTP benchmarks: a gunicorn on 127.0.0.1 and a keep-alive JSON client."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from _setup import ROOT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiClient:
    """Sequential requests over one keep-alive connection (reconnects if the server closed it)."""

    def __init__(self, port: int, key: str, *, timeout: float = 30) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        return self.request("POST", path, payload)

    def request(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        """(status, body as JSON); a body that is not JSON (a proxy's or server's HTML page)
        comes back as {"raw": text}, so a caller can report what the client saw."""
        body = None if payload is None else json.dumps(payload).encode()  # one segment
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            try:
                return response.status, json.loads(raw or b"{}")
            except ValueError:
                return response.status, {"raw": raw.decode(errors="replace")}
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def server_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the processes a benchmark starts (web server, worker cluster):
    production settings on the database `django_setup()` chose (KIOKU_DB_NAME, inherited),
    offline providers unless `env` names one, the API throttle out of the way."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "KIOKU_DB_POOL": "8",
        "OPENAI_API_KEY": "",
        "DEBUG": "0",
        # The per-key API throttle: far above what a benchmark sends, so a 429 is a finding.
        "KIOKU_API_RATE": "100000/min",
        **(env or {}),
    }


def _stop_group(process: subprocess.Popen, *, grace: float) -> None:
    """Stop the process group `process` leads (each started with start_new_session=True):
    SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextmanager
def api_server(env: dict[str, str] | None = None):
    """gunicorn (2 workers × 4 threads, a pool of 8 connections; see server_env) on a free port;
    stopped at the end."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
        "--keep-alive", "30", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=server_env(env), stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process, port
    finally:
        # The server runs in its own process group: stop exactly that group.
        _stop_group(process, grace=15)


@contextmanager
def worker_cluster(log_path: Path, env: dict[str, str] | None = None):
    """A django-q2 cluster (`manage.py qcluster`, KIOKU_Q_WORKERS workers) as `./scripts/run`
    starts it, on the same database and providers as `api_server(env)`; its output goes to
    `log_path`. Stopped at the end with SIGTERM (in-flight tasks finish), SIGKILL after 30 s."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=server_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _stop_group(process, grace=30)


def wait_ready(
    process, client: ApiClient, path: str, payload: dict, *, timeout: float = 90.0
) -> None:
    """Until `client` gets a 2xx for `payload` at `path` (or gunicorn exits, or time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {process.returncode}")
        try:
            status, body = client.post(path, payload)
        except OSError:
            client.close()
            time.sleep(0.25)
            continue
        if not 200 <= status < 300:
            raise RuntimeError(f"API answered {status}: {body}")
        return
    raise RuntimeError(f"the API did not answer within {timeout:.0f} s")
