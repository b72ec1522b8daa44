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

from _setup import ROOT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiClient:
    """Sequential requests over one keep-alive connection (reconnects if the server closed it)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        body = json.dumps(payload).encode()  # bytes: headers and body leave in one segment
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


@contextmanager
def api_server(env: dict[str, str] | None = None):
    """gunicorn (2 workers × 4 threads, a pool of 8 connections, offline providers unless `env`
    names a provider) on a free port, on the database `django_setup()` chose (it sets
    KIOKU_DB_NAME, inherited here); stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "KIOKU_DB_POOL": "8",
        "OPENAI_API_KEY": "",
        "DEBUG": "0",
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
        "--keep-alive", "30", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process, port
    finally:
        # The server runs in its own process group: stop exactly that group.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


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
