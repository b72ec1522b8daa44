"""What /healthz reports: database, PostgreSQL and pgvector versions, read replicas, the task
queue, the last backup; and the one rule for "the database is out of reach" that the web layer
and the workers share."""

from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone

from core.errors import ErrorCode, error_body

# What clients are told to wait before trying again while the database is out of reach.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE_MESSAGE = "The database cannot be reached right now; try again shortly."


def database_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached — connection refused or lost, the
    server shutting down or starting (SQLSTATE class 08 and 57P…) — rather than that one
    statement failed (a serialization failure, a lock timeout: those have their own codes)."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def database_unavailable_json() -> JsonResponse:
    """The API's answer while the database is out of reach: 503, DATABASE_UNAVAILABLE."""
    response = JsonResponse(
        error_body(ErrorCode.DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE), status=503
    )
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def database_unavailable_page() -> HttpResponse:
    """The pages' answer: a 503 page rendered without the request, so no context processor or
    session lookup touches the database again."""
    html = render_to_string(
        "503.html",
        {"code": ErrorCode.DATABASE_UNAVAILABLE, "message": DATABASE_UNAVAILABLE_MESSAGE},
    )
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def health_report() -> tuple[bool, dict[str, Any]]:
    report: dict[str, Any] = {"status": "ok", "time": timezone.now().isoformat()}
    problems: list[str] = []

    from core.database import database_capabilities

    try:
        capabilities = database_capabilities(connection)
    except Exception as exc:  # any driver error means "database unreachable"
        report["database"] = {"reachable": False, "error": _one_line(exc)}
        problems.append(f"database unreachable: {_one_line(exc)}")
    else:
        report["database"] = {
            "reachable": True,
            "vendor": connection.vendor,
            "embedded": connection.settings_dict["ENGINE"] == "config.embedded_backend",
            "postgres_version": capabilities.postgres_version,
            "pgvector_version": capabilities.pgvector_installed,
        }
        problem = capabilities.pgvector_problem()
        if capabilities.pgvector_installed is None:
            problem = problem or "pgvector is not installed in this database (run migrate)"
        if problem:
            problems.append(problem)

    from core.replicas import replica_aliases, replicas_report

    if replica_aliases():
        # A replica down or lagging is not an outage (its reads go to the primary): listed, not
        # a reason for 503.
        report["replicas"] = replicas_report()
    report["queue"] = (
        _queue_report(problems) if report["database"]["reachable"] else {"reachable": False}
    )
    report["backups"] = _backup_report()
    if problems:
        report["status"] = "unavailable"
        report["reasons"] = problems
    return not problems, report


def _queue_report(problems: list[str]) -> dict[str, Any]:
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ, Success

    broker = "orm" if Conf.ORM else "redis"
    try:
        # The ORM broker's table counts leased tasks too; Redis holds only those not yet taken.
        queued = OrmQ.objects.count() if Conf.ORM else get_broker().queue_size()
        last_success = (
            Success.objects.order_by("-stopped").values_list("stopped", flat=True).first()
        )
    except Exception as exc:
        problems.append(f"task queue unreachable: {_one_line(exc)}")
        return {"reachable": False, "broker": broker, "error": _one_line(exc)}
    return {
        "reachable": True,
        "broker": broker,
        "sync": bool(Conf.SYNC),
        "queued": queued,
        "last_success_at": last_success.isoformat() if last_success else None,
    }


def _backup_report() -> dict[str, Any]:
    """The last backup's time and size, read from the backup folder (no database needed). Not a
    reason for a 503: the app serves without backups; `overdue` says a schedule stopped making
    them."""
    from core.backups import backup_status

    try:
        status = backup_status()
    except OSError as exc:
        return {"readable": False, "error": _one_line(exc)}
    last = status.last
    return {
        "readable": True,
        "last_at": last.created_at.isoformat() if last else None,
        "last_size_bytes": last.size_bytes if last else None,
        "count": status.count,
        "keep": status.keep,
        "every_hours": status.every_hours,
        "overdue": status.is_overdue,
    }


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300] or exc.__class__.__name__
