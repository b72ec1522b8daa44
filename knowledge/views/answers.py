"""The Ask page and the answers: streamed answers with citations, feedback, the curation queue
and content gaps.

HTMX requests get the partial they swap; plain requests get whole pages, so every action also
works without JavaScript.
"""

import html
import re

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from core.errors import ApiError
from core.pages import permission_required, wants_fragment
from core.replicas import replica_reads
from knowledge import queries
from knowledge.answer.answering import answer_ask, answer_ask_stream, answer_feedback
from knowledge.answer.sse import event_stream_response
from knowledge.models import Answer, SourceType, chunk_url

ASK_TOP_K_CHOICES = (3, 5, 8, 12)
CITATION_MARK = re.compile(r"\[(\d{1,3})\]")


def answer_html(answer: Answer) -> str:
    """The answer text, escaped, with each [n] linked to the chunk it cites.

    The prompt-injection rule of the pages: a model's text is untrusted like the documents it
    read, so it is all escaped, and its only links are citations of passages it was given (the
    answer's cited sources, numbers checked by parse_citations). URLs, HTML and markdown links
    the model writes stay text, even when a document asked for them."""
    chunk_ids = {source.rank: source.chunk_id for source in answer.sources.all() if source.cited}

    def link(match: re.Match) -> str:
        chunk_id = chunk_ids.get(int(match.group(1)))
        if chunk_id is None:
            return match.group(0)
        return f'<a class="citation" href="{chunk_url(chunk_id)}" data-chunk="{chunk_id}">{match.group(0)}</a>'

    return mark_safe(CITATION_MARK.sub(link, html.escape(answer.answer)))  # noqa: S308


def _ask_filters(request: HttpRequest) -> dict:
    return {"source_type": request.POST.getlist("type") or request.GET.getlist("type")}


def _ask_top_k(raw: str | None) -> int | str | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return raw  # left as typed: the service answers VECTOR_INDEX_INVALID_TOP_K


@require_http_methods(["GET", "POST"])
@permission_required("knowledge.view_knowledgechunk")
@replica_reads
def ask_page(request: HttpRequest) -> HttpResponse:
    """The question box. With JavaScript the answer streams in (ask_stream); without it the form
    posts here and the stored answer's page opens."""
    context = {
        "question": request.POST.get("q", request.GET.get("q", "")),
        "top_k": _ask_top_k(request.POST.get("top_k")) or settings.KIOKU_ASK_TOP_K,
        "top_k_choices": ASK_TOP_K_CHOICES,
        "source_type_choices": SourceType.choices,
        "source_types": _ask_filters(request)["source_type"],
        "error": None,
    }
    if request.method == "POST":
        try:
            answer = answer_ask(
                question=context["question"],
                top_k=_ask_top_k(request.POST.get("top_k")),
                filters=_ask_filters(request),
                channel="web",
                user=request.user,
            )
        except ApiError as exc:
            context["error"] = exc
            return render(request, "knowledge/ask.html", context, status=exc.status)
        return redirect("knowledge:answer-detail", answer_id=answer.pk)
    return render(request, "knowledge/ask.html", context)


@require_POST
@permission_required("knowledge.view_knowledgechunk")
def ask_stream(request: HttpRequest) -> StreamingHttpResponse:
    """Server-sent events of one ask (see knowledge/answer/sse.py); the page's ask.js reads them."""
    events = answer_ask_stream(
        question=request.POST.get("q", ""),
        top_k=_ask_top_k(request.POST.get("top_k")),
        filters=_ask_filters(request),
        channel="web",
        user=request.user,
    )
    return event_stream_response(events)


def _answer_context(answer: Answer) -> dict:
    return {"answer": answer, "answer_html": answer_html(answer)}


@require_GET
@permission_required("knowledge.view_answer")
@vary_on_headers("HX-Request")
def answer_detail(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = get_object_or_404(queries.answers_with_sources(), pk=answer_id)
    template = (
        "knowledge/_answer.html" if wants_fragment(request) else "knowledge/answer_detail.html"
    )
    return render(request, template, _answer_context(answer))


@require_POST
@permission_required("knowledge.change_answer")
def answer_feedback_view(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = get_object_or_404(Answer, pk=answer_id)
    helpful = request.POST.get("helpful")
    if helpful not in ("yes", "no"):
        return HttpResponseBadRequest("helpful must be yes or no")
    try:
        answer_feedback(
            answer=answer,
            is_helpful=helpful == "yes",
            comment=request.POST.get("comment", ""),
            by=request.user.get_username(),
        )
    except ApiError as exc:
        return HttpResponseBadRequest(exc.message)
    if wants_fragment(request):
        return render(request, "knowledge/_answer_feedback.html", {"answer": answer})
    return redirect("knowledge:answer-detail", answer_id=answer.pk)


@require_GET
@permission_required("knowledge.view_answer")
@replica_reads
def answer_queue(request: HttpRequest) -> HttpResponse:
    """Not-helpful answers for curators, each with the passages it was given."""
    page = Paginator(queries.answers_needing_curation(), 25).get_page(request.GET.get("page"))
    rows = [_answer_context(answer) for answer in page]
    return render(request, "knowledge/answer_queue.html", {"page": page, "rows": rows})


@require_GET
@permission_required("knowledge.view_answer")
@replica_reads
def content_gaps(request: HttpRequest) -> HttpResponse:
    return render(request, "knowledge/content_gaps.html", {"gaps": queries.content_gaps()})
