"""Database checks that `migrate` runs first, so a database without pgvector gets a clear message
instead of a stack trace from CREATE EXTENSION."""

from django.core.checks import Error, Tags, register
from django.db import connections

from core.database import MIN_PGVECTOR, database_capabilities


@register(Tags.database)
def pgvector_available(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in databases or []:
        if connections[alias].vendor != "postgresql":
            errors.append(Error("Kioku needs PostgreSQL.", id="kioku.E001"))
            continue
        capabilities = database_capabilities(connections[alias])
        problem = capabilities.pgvector_problem()
        if problem:
            errors.append(
                Error(
                    problem,
                    hint=(
                        "Install pgvector ≥ "
                        + ".".join(map(str, MIN_PGVECTOR))
                        + " on the database server (e.g. the pgvector/pgvector Docker image, or "
                        "the postgresql-NN-pgvector package), or unset DATABASE_URL to use the "
                        "embedded PostgreSQL."
                    ),
                    id="kioku.E002",
                )
            )
    return errors
