import sys

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import database_unreachable, health_report
from core.middleware import database_unavailable_for
from core.queries import home_dashboard
from core.replicas import replica_reads


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, report = health_report()
    return JsonResponse(
        report, status=200 if healthy else 503, json_dumps_params={"ensure_ascii": False}
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500, which also catches what no view raised: a middleware's own query
    (the session saved on the way out) fails outside process_exception's reach. A database out
    of reach is still a 503 there."""
    error = sys.exc_info()[1]
    if error is not None and database_unreachable(error):
        return database_unavailable_for(request, error)
    return defaults.server_error(request)


@login_required
@replica_reads
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "core/home.html", {"dashboard": home_dashboard()})


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The login page after too many failed attempts (django-axes' AXES_LOCKOUT_CALLABLE): the
    form again, saying why it refuses and for how long, with 429 Too Many Requests."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {
        "form": AuthenticationForm(request),
        "locked_out_minutes": minutes,
        "next": request.POST.get("next", ""),
    }
    return render(request, "registration/login.html", context, status=429)
