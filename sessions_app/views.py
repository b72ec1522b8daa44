"""Session pages: the list (filters swap the table over HTMX) and one session with its archive
status, linked knowledge and messages. Staff may archive now or delete (personal data)."""

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from core.errors import ApiError
from core.pages import permission_required, wants_fragment
from sessions_app import queries
from sessions_app.archiver import session_archive
from sessions_app.models import ChatSession, SessionStatus
from sessions_app.services import session_delete

SESSIONS_PER_PAGE = 50
MESSAGES_PER_PAGE = 100


class SessionFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *SessionStatus.choices], required=False)
    platform = forms.CharField(required=False, max_length=50)
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Key, title or participant"}
        ),
    )


def _session_or_404(key: str) -> ChatSession:
    try:
        return queries.session_by_key(key)
    except ApiError as exc:
        raise Http404(exc.message) from exc


@require_GET
@permission_required("sessions_app.view_chatsession")
@vary_on_headers("HX-Request")
def session_list(request: HttpRequest) -> HttpResponse:
    filters = SessionFilterForm(request.GET)
    filters.is_valid()
    wanted = filters.cleaned_data
    sessions = queries.session_list(
        status=wanted.get("status") or None,
        platform=wanted.get("platform") or None,
        query=wanted.get("q") or None,
    )
    context = {
        "filters": filters,
        "is_filtered": any(wanted.values()),
        "page_obj": Paginator(sessions, SESSIONS_PER_PAGE).get_page(request.GET.get("page")),
    }
    if wants_fragment(request):
        return render(request, "sessions_app/_session_table.html", context)
    return render(request, "sessions_app/session_list.html", context)


def _detail_context(request: HttpRequest, key: str) -> dict[str, Any]:
    session = queries.session_by_key(key)
    return {
        "session": session,
        "messages_page": Paginator(queries.session_messages(session), MESSAGES_PER_PAGE).get_page(
            request.GET.get("page")
        ),
    }


@require_GET
@permission_required("sessions_app.view_chatsession")
def session_detail(request: HttpRequest, key: str) -> HttpResponse:
    try:
        context = _detail_context(request, key)
    except ApiError as exc:
        return render(request, "sessions_app/session_missing.html", {"error": exc}, status=404)
    return render(request, "sessions_app/session_detail.html", context)


@require_POST
@permission_required("sessions_app.change_chatsession")
def session_archive_now(request: HttpRequest, key: str) -> HttpResponse:
    session = _session_or_404(key)
    try:
        outcome = session_archive(session_id=session.pk)
        result = {"outcome": outcome.outcome, "reason": outcome.reason, "chunks": outcome.chunks}
    except ApiError as exc:
        result = {"outcome": "error", "reason": exc.message}
    context = {**_detail_context(request, key), "archive_result": result}
    if request.htmx:
        return render(request, "sessions_app/_session_header.html", context)
    return render(request, "sessions_app/session_detail.html", context)


@require_POST
@permission_required("sessions_app.delete_chatsession")
def session_remove(request: HttpRequest, key: str) -> HttpResponse:
    session = _session_or_404(key)
    counts = session_delete(session=session)
    messages.success(
        request,
        f"Deleted session {key}: {counts['messages']} messages and "
        f"{counts['sources']} knowledge source(s).",
    )
    return redirect("sessions_app:session-list")
