"""The django-ninja API root at /api/v1/ and the one error format every endpoint answers with."""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from core.errors import STATUS_CODES, ApiError, ErrorCode, error_body
from core.health import database_unavailable_json, database_unreachable

logger = logging.getLogger(__name__)


class ErrorOut(Schema):
    code: str
    message: str
    details: dict


api = NinjaAPI(
    title="Kioku API",
    version="1",
    description=(
        "Kioku's JSON API. Authenticate with `Authorization: Bearer <key>` "
        "(`manage.py create_api_key NAME --scope read`). Every error is "
        '`{"code": "...", "message": "...", "details": {...}}` with a matching HTTP status.'
    ),
    urls_namespace="api",
    docs_url="/docs",
)


def error_response(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> HttpResponse:
    return api.create_response(request, error_body(code, message, details), status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return api.create_response(request, exc.body(), status=exc.status)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors
    ]
    return error_response(
        request, 422, ErrorCode.VALIDATION_ERROR, "The request is not valid.", {"errors": errors}
    )


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(request, 401, ErrorCode.AUTH_REQUIRED, "This endpoint needs an API key.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    code = STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if message.startswith("Cannot parse request body"):
        code, message = ErrorCode.INVALID_JSON, "The request body is not valid JSON."
    return error_response(request, exc.status_code, code, message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    message = str(exc) or "Not found."
    return error_response(request, 404, ErrorCode.NOT_FOUND, message)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(
        request,
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.",
        {"limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
    )


@api.exception_handler(InterfaceError)
@api.exception_handler(OperationalError)
def _database_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The database out of reach: 503 DATABASE_UNAVAILABLE (core/health.py), not a 500.
    if database_unreachable(exc):
        return database_unavailable_json()
    return _unexpected(request, exc)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return error_response(
        request, 500, ErrorCode.INTERNAL_ERROR, "Something went wrong on our side; it was logged."
    )


def register_routers() -> None:
    from core.api import router as core_router
    from dispatch.api import router as dispatch_router
    from knowledge.api import router as knowledge_router
    from sessions_app.api import router as sessions_router

    api.add_router("/", core_router)
    api.add_router("/", knowledge_router)
    api.add_router("/", sessions_router)
    api.add_router("/", dispatch_router)


register_routers()
