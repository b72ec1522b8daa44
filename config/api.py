"""The django-ninja API root at /api/v1/ and the one error format every endpoint answers with."""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from core.edge import EdgeParser, path_params_checked
from core.errors import STATUS_CODES, ApiError, ErrorCode, error_body
from core.health import database_unavailable_json, database_unreachable
from core.schemas import ErrorOut
from core.throttle import ApiKeyRateThrottle

logger = logging.getLogger(__name__)


# What each status means, for the statuses config/api.py documents on operations by their shape.
ERROR_STATUSES = {
    400: "The body is not JSON or not UTF-8 (INVALID_JSON, TEXT_INVALID_ENCODING), or a request "
    "the endpoint refuses with its own code.",
    401: "No API key, or an unknown or revoked one (AUTH_REQUIRED, AUTH_INVALID_KEY).",
    403: "The key lacks the scope (AUTH_FORBIDDEN_SCOPE).",
    404: "No such object (NOT_FOUND or the app's own code).",
    413: "The body is larger than the limit (PAYLOAD_TOO_LARGE, or the app's own code).",
    422: "A value is not valid (VALIDATION_ERROR, TEXT_INVALID_CHARACTER, JSON_TOO_DEEP, or the "
    "app's own code).",
    429: "Too many requests for this key (RATE_LIMITED); wait Retry-After seconds.",
    503: "The database or a provider is unavailable (SERVICE_UNAVAILABLE or the app's own code).",
}


class KiokuAPI(NinjaAPI):
    def get_openapi_schema(self, **kwargs: Any) -> dict[str, Any]:
        """ninja's schema, plus the error statuses each operation can answer by its shape: every
        one needs a key and is throttled; parameters can be invalid, path objects missing,
        bodies malformed or too large."""
        schema = super().get_openapi_schema(**kwargs)
        schema["components"]["schemas"].setdefault("ErrorOut", ErrorOut.model_json_schema())
        _bounds_named(schema["components"]["schemas"])
        for operations in schema["paths"].values():
            for operation in operations.values():
                _document_errors(operation)
        return schema


# pydantic writes a bound of an Annotated integer with a validator (core.schemas.JsonInt) under
# its Python name; JSON Schema's names let clients and the fuzzer read it.
BOUND_NAMES = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _bounds_named(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for python_name, json_name in BOUND_NAMES.items():
                if python_name in node:
                    node[json_name] = node.pop(python_name)
        for child in node.values():
            _bounds_named(child)
    elif isinstance(node, list):
        for child in node:
            _bounds_named(child)


def _document_errors(operation: dict[str, Any]) -> None:
    places = {parameter["in"] for parameter in operation.get("parameters", [])}
    statuses = {401, 403, 429, 503}
    if places or "requestBody" in operation:
        statuses |= {422}
    if "path" in places:
        statuses |= {404}
    if "query" in places or "requestBody" in operation:
        statuses |= {400}
    if "requestBody" in operation:
        statuses |= {413}
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses - set(responses) - {int(key) for key in responses}):
        response = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
        responses[status] = response


api = KiokuAPI(
    title="Kioku API",
    version="1",
    description=(
        "Kioku's JSON API. Authenticate with `Authorization: Bearer <key>` "
        "(`manage.py create_api_key NAME --scope read`). Every error is "
        '`{"code": "...", "message": "...", "details": {...}}` with a matching HTTP status. '
        "With read replicas, searches, answers and lists may be a few seconds behind a write: "
        "send `?consistency=strong` (or the header `Kioku-Consistency: strong`) to read the "
        "primary."
    ),
    urls_namespace="api",
    docs_url="/docs",
    # The rule for NUL, lone surrogates, encodings and depth of what clients send (core/edge.py).
    parser=EdgeParser(),
    throttle=[ApiKeyRateThrottle()],
)
api.add_decorator(path_params_checked)


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
    if isinstance(exc.__cause__, ApiError):  # our parser refused the body (core/edge.py)
        return _api_error(request, exc.__cause__)
    if isinstance(exc, Throttled):
        return error_response(
            request,
            429,
            ErrorCode.RATE_LIMITED,
            f"Too many requests for this API key (KIOKU_API_RATE {settings.KIOKU_API_RATE}).",
            {"rate": settings.KIOKU_API_RATE, "retry_after_seconds": exc.wait},
        )
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


@api.exception_handler(MultiPartParserError)
def _bad_multipart(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return error_response(
        request, 400, ErrorCode.BAD_REQUEST, f"The multipart body cannot be read: {exc}"
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
    from quality.api import router as quality_router
    from sessions_app.api import router as sessions_router

    api.add_router("/", core_router)
    api.add_router("/", knowledge_router)
    api.add_router("/", sessions_router)
    api.add_router("/", dispatch_router)
    api.add_router("/", quality_router)


register_routers()
