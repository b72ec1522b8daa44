"""Redis and PgBouncer from Debian, started by the tests that need them: each on a free loopback
port with a temporary folder of its own, killed when its test ends. `./scripts/test` installs
both (like Chromium); where they cannot be installed, their tests skip and say why."""

import os
import pwd
import secrets
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


def pgbouncer_start(
    folder: Path, *, server_host: str, server_port: int, server_user: str, server_password: str
) -> tuple[Engine, str]:
    """PgBouncer on 127.0.0.1 in transaction pooling mode in front of a PostgreSQL server (a
    Unix socket folder or a host), for every database on it (`*`). Clients log in with SCRAM as
    `server_user` and the password returned; PgBouncer logs into the server as that user."""
    pgbouncer = binary_or_skip("pgbouncer", "/usr/sbin", "/usr/bin")
    port = free_port()
    password = secrets.token_urlsafe(16)
    server = f"host={server_host} port={server_port} user={server_user}"
    if server_password:
        server += f" password={server_password}"
    (folder / "userlist.txt").write_text(f'"{server_user}" "{password}"\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
logfile = {folder / "pgbouncer.log"}
"""
    )
    command = [pgbouncer, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: it runs as the owner of the server's socket folder
        # (the embedded server's system user), which may connect to that socket.
        owner = pwd.getpwuid(os.stat(server_host).st_uid).pw_name if "/" in server_host else ""
        run_as = owner if owner and owner != "root" else "nobody"
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, run_as)
        command[1:1] = ["-u", run_as]
    # Its own log file is written as that user; what it prints (the same lines) goes here.
    return start(command, port=port, log=folder / "pgbouncer.out"), password
