"""What the connected PostgreSQL offers: versions of the server and of pgvector."""

from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

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
