"""Django's PostgreSQL backend, pointed at the embedded server and starting it on demand."""

import psycopg
from django.db.backends.postgresql import base as postgresql

from config import embedded_db


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self):
        server = embedded_db.ensure_running()
        params = super().get_connection_params()
        params["host"] = server.socket_dir
        params["port"] = server.port
        params.setdefault("user", server.user)
        return params

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError as exc:
            dbname = conn_params.get("dbname")
            # Only the configured database is created on demand (not test_* databases, which
            # the test runner manages, nor the maintenance database).
            if dbname != self.settings_dict["NAME"] or "does not exist" not in str(exc):
                raise
            _create_database(conn_params, dbname)
            return super().get_new_connection(conn_params)


def _create_database(conn_params: dict, dbname: str) -> None:
    maintenance = {**conn_params, "dbname": "postgres"}
    maintenance.pop("cursor_factory", None)
    maintenance.pop("context", None)
    with psycopg.connect(**maintenance, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it at the same moment
