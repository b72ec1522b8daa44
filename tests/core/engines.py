"""Redis and PgBouncer from Debian, started by the tests that need them: each on a free loopback
port with a temporary folder of its own, killed when its test ends. `./scripts/test` installs
both (like Chromium); where they cannot be installed, their tests skip and say why."""

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def binary(name: str, *folders: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((f"{d}/{name}" for d in folders if os.access(f"{d}/{name}", os.X_OK)), None)


def binary_or_skip(name: str, *folders: str) -> str:
    path = binary(name, *folders)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name}; ./scripts/test installs it)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Engine:
    process: subprocess.Popen
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait_listening(self, *, timeout: float = 20) -> None:
        """Until the port accepts connections (a bound on a hung start, not a measured time)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    message = f"not listening after {timeout:.0f} s:\n{self.output()}"
                    raise AssertionError(message) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start(command: list[str], *, port: int, log: Path) -> Engine:
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one
        )
    engine = Engine(process, port, log)
    try:
        engine.wait_listening()
    except BaseException:
        engine.stop()
        raise
    return engine


def redis_start(folder: Path) -> Engine:
    """redis-server on 127.0.0.1 with nothing written to disk (no snapshots, no append-only
    file)."""
    redis_server = binary_or_skip("redis-server", "/usr/bin", "/usr/sbin")
    port = free_port()
    command = [
        redis_server,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    return start(command, port=port, log=folder / "redis.log")
