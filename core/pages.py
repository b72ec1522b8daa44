"""What every HTMX page shares: who may see and do what, and whether a request wants a fragment."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

View = Callable[..., HttpResponse]


def permission_required(*perms: str) -> Callable[[View], View]:
    """Logged in (else the login page) and holding every one of `perms` (else 403): on every
    page, with the permission the groups of core/permissions.py hand out for it."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perms(perms):
                raise PermissionDenied(f"This needs the permission {', '.join(perms)}.")
            return view(request, *args, **kwargs)

        wrapper.required_permissions = perms  # read by the tests that walk every page
        return login_required(wrapper)

    return decorate


def wants_fragment(request: HttpRequest) -> bool:
    """An HTMX request swaps a fragment in; a history restore after a cache miss needs the
    whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request
