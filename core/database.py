"""What the connected PostgreSQL offers (versions of the server and of pgvector), and connection
pools that survive a fork."""

from dataclasses import dataclass

import psycopg
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper

MIN_PGVECTOR = (0, 7, 0)
MIN_POSTGRES = 15


def parse_version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


@dataclass(frozen=True)
class DatabaseCapabilities:
    postgres_version: str
    postgres_major: int
    pgvector_available: str | None  # version the server could install
    pgvector_installed: str | None  # version installed in this database

    def pgvector_problem(self) -> str | None:
        if self.postgres_major < MIN_POSTGRES:
            return f"PostgreSQL {self.postgres_version} is too old: Kioku needs {MIN_POSTGRES} or newer."
        version_text = self.pgvector_installed or self.pgvector_available
        if version_text is None:
            return "The pgvector extension is not available on this PostgreSQL server."
        version = parse_version(version_text) or (0,)
        if version < MIN_PGVECTOR:
            return (
                f"pgvector {version_text} is too old: Kioku needs "
                f"{'.'.join(map(str, MIN_PGVECTOR))} or newer (halfvec, HNSW)."
            )
        return None


def database_capabilities(connection: BaseDatabaseWrapper) -> DatabaseCapabilities:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        version, version_num, available, installed = cursor.fetchone()
    return DatabaseCapabilities(
        postgres_version=version.split()[0],
        postgres_major=version_num // 10000,
        pgvector_available=available,
        pgvector_installed=installed,
    )


def pg_stat_statements_install(conn: psycopg.Connection) -> bool:
    """CREATE EXTENSION pg_stat_statements where the server offers it and the role may; False
    (and nothing changed) otherwise. Used by core's migration and after a restore."""
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
    ).fetchone()
    if not available:
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


# Pools a forked child inherited: kept referenced so that it never tears them down (see below).
_inherited_pools: list[object] = []


def connection_pools_forget() -> None:
    """Run in every forked child (os.register_at_fork, core/apps.py): stop using the parent's
    psycopg pools (KIOKU_DB_POOL) and the connection a thread held. Their sockets are the
    parent's server sessions: a django-q2 worker forked from the cluster would otherwise send
    its statements down the same session as its siblings and the parent, interleaved (tasks
    failing with "the last operation didn't produce records", rows never embedded). The child
    opens a pool of its own on first use. Nothing is closed here: closing would end the
    parent's sessions (psycopg itself leaves a connection made by another process alone)."""
    pools = PostgresWrapper._connection_pools
    if not pools:
        return
    _inherited_pools.extend(pools.values())
    pools.clear()
    for wrapper in connections.all(initialized_only=True):
        if wrapper.settings_dict.get("OPTIONS", {}).get("pool"):
            wrapper.connection = None
