"""System checks. The database checks run first in `migrate`, so a database without pgvector gets
a clear message instead of a stack trace from CREATE EXTENSION; the secret-key check stops every
command, the worker and (through config/wsgi.py) the web server before they sign anything with a
key that others know."""

from collections.abc import Sequence

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register, run_checks
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from core.database import MIN_PGVECTOR, database_capabilities

# Keys written in this repository (the old development fallback of config/settings.py, the old
# default of docker-compose.yml, the Dockerfile's build-time key): anyone can sign with them.
PUBLISHED_SECRET_KEYS = frozenset(
    {"kioku-insecure-development-key-change-me", "change-me", "collectstatic-only"}
)
# Django's deploy check (security.W009) warns below 50 characters. This check stops the app, so it
# refuses only keys too short to be random: 32 hex characters already hold 128 bits.
SECRET_KEY_MIN_LENGTH = 32


@register(Tags.database)
def pgvector_available(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: object,
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
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


def secret_key_weakness(key: str) -> str | None:
    """Why `key` must not sign sessions, CSRF tokens and password resets, or None. The rule of
    Django's security.W009, with a shorter minimum (see SECRET_KEY_MIN_LENGTH) and the keys this
    repository publishes."""
    if not key:
        return "is not set"
    if key in PUBLISHED_SECRET_KEYS:
        return "is a default published with Kioku"
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"starts with {SECRET_KEY_INSECURE_PREFIX!r}: Django made it for development"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"has {len(key)} characters, fewer than {SECRET_KEY_MIN_LENGTH}"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different characters"
    return None


@register(Tags.security)
def secret_key_strong(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Without DEBUG, refuse a missing, published or weak SECRET_KEY. A local instance (no
    DATABASE_URL) makes a random key of its own in the data folder, so this stops deployments
    only."""
    if settings.DEBUG:
        return []
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    weakness = secret_key_weakness(key)
    if weakness is None:
        return []
    return [
        Error(
            f"SECRET_KEY {weakness}.",
            hint=(
                "Set the SECRET_KEY environment variable to a long random value, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'. "
                "Keep it secret and the same for every process of the deployment."
            ),
            id="kioku.E004",
        )
    ]


def security_checks_enforce() -> None:
    """Run the security system checks and raise if one fails. For servers that run no system
    checks themselves: gunicorn imports config.wsgi and serves."""
    problems = [message for message in run_checks(tags=[Tags.security]) if message.is_serious()]
    if problems:
        raise ImproperlyConfigured(
            "System check failed:\n" + "\n".join(str(problem) for problem in problems)
        )
