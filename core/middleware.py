import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import STATUS_CODES, ErrorCode, error_body
from core.health import database_unavailable_json, database_unavailable_page, database_unreachable

logger = logging.getLogger(__name__)
API_PREFIX = "/api/"


class ApiErrorShapeMiddleware:
    """Under /api/, any error that did not come from our API handlers (Django's 404 for an
    unknown route, 405, CSRF, an exception outside ninja) still gets the JSON error shape.
    Everywhere, a database out of reach is a 503 (DATABASE_UNAVAILABLE, Retry-After) — JSON under
    /api/, a plain page elsewhere — not a 500: nothing is wrong with the request, it can be
    retried once the database is back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            shaped = _shaped(response.status_code, _message_for(response))
            if response.has_header("Allow"):  # a 405 must say what is allowed (RFC 9110)
                shaped["Allow"] = response["Allow"]
            return shaped
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if database_unreachable(exception):
            return database_unavailable_for(request, exception)
        if request.path.startswith(API_PREFIX):
            logger.exception("Unhandled error on %s %s", request.method, request.path)
            return _shaped(500, "Something went wrong on our side; it was logged.")
        return None


def database_unavailable_for(request: HttpRequest, exception: BaseException) -> HttpResponse:
    """The 503 for this request while the database is out of reach: JSON under /api/, a page
    elsewhere."""
    logger.warning("Database unreachable on %s %s: %s", request.method, request.path, exception)
    if request.path.startswith(API_PREFIX):
        return database_unavailable_json()
    return database_unavailable_page()


def _message_for(response: HttpResponse) -> str:
    status = response.status_code
    if status == 404:
        return "No API endpoint at this address. See /api/v1/docs."
    if status == 405:
        allowed = response.get("Allow", "")
        return f"Method not allowed here. Allowed: {allowed}." if allowed else "Method not allowed."
    if status >= 500:
        return "Something went wrong on our side; it was logged."
    return response.reason_phrase or "Request failed."


def _shaped(status: int, message: str) -> JsonResponse:
    code = STATUS_CODES.get(
        status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST
    )
    return JsonResponse(
        error_body(code, message), status=status, json_dumps_params={"ensure_ascii": False}
    )
