"""What every HTMX page shares: who may write, and whether a request wants a fragment."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Logged in (else the login page) and staff (else 403): for every page action that writes."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can make changes here.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def wants_fragment(request: HttpRequest) -> bool:
    """An HTMX request swaps a fragment in; a history restore after a cache miss needs the
    whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request
