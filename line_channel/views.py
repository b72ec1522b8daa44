"""The LINE webhook: LINE's servers post here, signed with the channel secret (no login, no
CSRF token: the signature is the gate). The answer is quick: events are stored and handled by
the worker."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.errors import ApiError, error_body
from line_channel.errors import LINE_BODY_TOO_LARGE
from line_channel.services import line_webhook_receive


@csrf_exempt
@require_POST
def line_webhook(request: HttpRequest) -> JsonResponse:
    # Decided from the declared length, before the body is read.
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.KIOKU_LINE_MAX_BODY_BYTES:
        return JsonResponse(
            error_body(
                LINE_BODY_TOO_LARGE,
                f"The body is over {settings.KIOKU_LINE_MAX_BODY_BYTES} bytes.",
                {},
            ),
            status=413,
        )
    try:
        events = line_webhook_receive(
            body=request.body, signature=request.headers.get("X-Line-Signature")
        )
    except ApiError as exc:  # LineError, or text PostgreSQL cannot store (core/edge.py)
        return JsonResponse(exc.body(), status=exc.status)
    return JsonResponse({"new_events": len(events)})
