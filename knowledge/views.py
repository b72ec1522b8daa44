"""Curator pages: list and upload sources, read and edit their chunks, watch the vector index.

HTMX requests get the partial they swap (`_source_table.html`, `_source_header.html`,
`_chunk_row.html`, `_chunk_form.html`, `_ingest_result.html`, `_index_status.html`,
`_index_action_result.html`, `_search_results.html`); plain requests get whole pages, so every action also works without
JavaScript.
"""

import html
import json
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from core.errors import ApiError
from core.pages import staff_required, wants_fragment
from knowledge import queries
from knowledge.answer.answering import answer_ask, answer_ask_stream, answer_feedback
from knowledge.answer.sse import event_stream_response
from knowledge.embed import vector_index
from knowledge.embed.spaces import embedding_switch_start
from knowledge.forms import (
    ChunkFlagsForm,
    ChunkForm,
    SourceEnabledForm,
    SourceFilterForm,
    SourceTextForm,
    SourceUploadForm,
)
from knowledge.ingest.base import IngestError, IngestResult
from knowledge.ingest.ingestion import source_ingest_file, source_ingest_text
from knowledge.models import Answer, KnowledgeChunk, KnowledgeSource, SourceType, chunk_url
from knowledge.search.base import MODES, SearchError, SearchResult
from knowledge.search.service import chunk_search
from knowledge.services import CurationError, chunk_update, sources_set_enabled

SOURCES_PER_PAGE = 50
CHUNKS_PER_PAGE = 100

# Events sent in HX-Trigger; the source table and the source header listen for them.
SOURCES_CHANGED = "sources-changed"
SOURCE_CHANGED = "source-changed"
# Sent after a rebuild or a clear; the index status listens for it.
INDEX_CHANGED = "index-changed"


# --- Sources ----------------------------------------------------------------------------------


def _source_list_context(request: HttpRequest) -> dict:
    filters = SourceFilterForm(request.GET)
    filters.is_valid()  # invalid values are ignored: cleaned_data holds only the valid ones
    wanted = filters.cleaned_data
    sources = queries.source_list(
        source_type=wanted.get("source_type") or None,
        status=wanted.get("status") or None,
        enabled=wanted.get("enabled"),
        query=wanted.get("q") or None,
    )
    return {
        "filters": filters,
        "is_filtered": any(value not in ("", None) for value in wanted.values()),
        "page_obj": Paginator(sources, SOURCES_PER_PAGE).get_page(request.GET.get("page")),
    }


@require_GET
@login_required
@vary_on_headers("HX-Request")
def source_list(request: HttpRequest) -> HttpResponse:
    context = _source_list_context(request)
    if wants_fragment(request):
        return render(request, "knowledge/_source_table.html", context)
    return render(
        request,
        "knowledge/source_list.html",
        {**context, "upload_form": SourceUploadForm(), "text_form": SourceTextForm()},
    )


def _ingest_response(
    request: HttpRequest,
    *,
    upload_form: SourceUploadForm | None = None,
    text_form: SourceTextForm | None = None,
    result: IngestResult | None = None,
    error: IngestError | None = None,
) -> HttpResponse:
    form = upload_form or text_form
    problems = [
        ("" if name == NON_FIELD_ERRORS else form[name].label, message)
        for name, messages in (form.errors.items() if form else ())
        for message in messages
    ]
    context = {"result": result, "error": error, "form_problems": problems}
    if wants_fragment(request):
        response = render(request, "knowledge/_ingest_result.html", context)
        if result is not None:
            response["HX-Trigger"] = SOURCES_CHANGED
        return response
    # Without JavaScript: the whole list page with the outcome on top; a refused form comes back
    # as it was sent, a processed one empty.
    refused = result is None
    return render(
        request,
        "knowledge/source_list.html",
        {
            **_source_list_context(request),
            **context,
            "upload_form": upload_form if upload_form and refused else SourceUploadForm(),
            "text_form": text_form if text_form and refused else SourceTextForm(),
        },
    )


@require_POST
@staff_required
def source_upload(request: HttpRequest) -> HttpResponse:
    form = SourceUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _ingest_response(request, upload_form=form)
    upload = form.cleaned_data["file"]
    try:
        result = source_ingest_file(
            data=upload.read(),
            filename=upload.name,
            content_type=upload.content_type,
            source_type=form.cleaned_data["source_type"],
            title=form.cleaned_data["title"] or None,
            uri=form.cleaned_data["uri"],
            metadata=form.cleaned_data["metadata"],
        )
    except IngestError as exc:
        return _ingest_response(request, upload_form=form, error=exc)
    return _ingest_response(request, upload_form=form, result=result)


@require_POST
@staff_required
def source_create_text(request: HttpRequest) -> HttpResponse:
    form = SourceTextForm(request.POST)
    if not form.is_valid():
        return _ingest_response(request, text_form=form)
    try:
        result = source_ingest_text(
            text=form.cleaned_data["text"],
            text_format=form.cleaned_data["text_format"],
            source_type=form.cleaned_data["source_type"],
            title=form.cleaned_data["title"] or None,
            metadata=form.cleaned_data["metadata"],
        )
    except IngestError as exc:
        return _ingest_response(request, text_form=form, error=exc)
    return _ingest_response(request, text_form=form, result=result)


def _source_header_context(source_id: int) -> dict:
    source = get_object_or_404(
        queries.sources_with_counts().select_related("superseded_by"), pk=source_id
    )
    metadata = [
        (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in sorted(source.metadata.items())
    ]
    return {"source": source, "metadata": metadata}


@require_GET
@login_required
@vary_on_headers("HX-Request")
def source_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    context = _source_header_context(source_id)
    if wants_fragment(request):
        # The header refreshes itself after a chunk edit changed the source's status.
        return render(request, "knowledge/_source_header.html", context)
    chunks = queries.source_chunks(source_id=source_id)
    context["chunks"] = Paginator(chunks, CHUNKS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "knowledge/source_detail.html", context)


@require_POST
@staff_required
def source_set_enabled(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(KnowledgeSource, pk=source_id)
    form = SourceEnabledForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Send enabled=true or enabled=false.")
    sources_set_enabled(
        sources=KnowledgeSource.objects.filter(pk=source.pk), enabled=form.cleaned_data["enabled"]
    )
    if wants_fragment(request):
        return render(request, "knowledge/_source_header.html", _source_header_context(source.pk))
    return redirect("knowledge:source-detail", source_id=source.pk)


# --- Chunks -----------------------------------------------------------------------------------


def _chunk_anchor_url(chunk: KnowledgeChunk) -> str:
    """The source page that shows this chunk, scrolled to it."""
    before = queries.source_chunks(source_id=chunk.source_id).filter(ordinal__lt=chunk.ordinal)
    page = before.count() // CHUNKS_PER_PAGE + 1
    url = reverse("knowledge:source-detail", kwargs={"source_id": chunk.source_id})
    return f"{url}{f'?page={page}' if page > 1 else ''}#chunk-{chunk.pk}"


def _chunk_row(request: HttpRequest, chunk: KnowledgeChunk) -> HttpResponse:
    if wants_fragment(request):
        return render(request, "knowledge/_chunk_row.html", {"chunk": chunk})
    return redirect(_chunk_anchor_url(chunk))


@require_GET
@login_required
@vary_on_headers("HX-Request")
def chunk_detail(request: HttpRequest, chunk_id: int) -> HttpResponse:
    """The chunk's row for HTMX (Cancel in the edit form); otherwise a redirect to its anchor."""
    return _chunk_row(request, get_object_or_404(KnowledgeChunk, pk=chunk_id))


@require_http_methods(["GET", "POST"])
@staff_required
def chunk_edit(request: HttpRequest, chunk_id: int) -> HttpResponse:
    chunk = get_object_or_404(KnowledgeChunk.objects.select_related("source"), pk=chunk_id)
    error = None
    auto_id = f"id_chunk_{chunk.pk}_%s"  # several rows can be in edit mode at once
    if request.method == "POST":
        form = ChunkForm(request.POST, auto_id=auto_id)
        if form.is_valid():
            previous_hash = chunk.content_hash
            try:
                chunk_update(chunk=chunk, content=form.cleaned_data["content"])
            except CurationError as exc:
                error = exc
                chunk.refresh_from_db()
            else:
                response = _chunk_row(request, chunk)
                if chunk.content_hash != previous_hash:
                    response["HX-Trigger"] = SOURCE_CHANGED  # the source is pending again
                return response
    else:
        form = ChunkForm(initial={"content": chunk.content}, auto_id=auto_id)
    context = {"chunk": chunk, "form": form, "error": error}
    if wants_fragment(request):
        return render(request, "knowledge/_chunk_form.html", context)
    return render(request, "knowledge/chunk_edit.html", context)


@require_POST
@staff_required
def chunk_set_flags(request: HttpRequest, chunk_id: int) -> HttpResponse:
    chunk = get_object_or_404(KnowledgeChunk, pk=chunk_id)
    form = ChunkFlagsForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Send enabled=true|false or pinned=true|false.")
    chunk_update(
        chunk=chunk, enabled=form.cleaned_data["enabled"], pinned=form.cleaned_data["pinned"]
    )
    return _chunk_row(request, chunk)


# --- The vector index -------------------------------------------------------------------------


@require_GET
@login_required
@vary_on_headers("HX-Request")
def index_status(request: HttpRequest) -> HttpResponse:
    context = {"status": queries.index_status()}
    if wants_fragment(request):
        # Polled every few seconds while chunks wait for embedding.
        return render(request, "knowledge/_index_status.html", context)
    return render(request, "knowledge/index_status.html", context)


def _index_action_response(request: HttpRequest, *, message: str) -> HttpResponse:
    if wants_fragment(request):
        response = render(request, "knowledge/_index_action_result.html", {"message": message})
        response["HX-Trigger"] = INDEX_CHANGED
        return response
    messages.success(request, message)
    return redirect("knowledge:index-status")


@require_POST
@staff_required
def index_rebuild(request: HttpRequest) -> HttpResponse:
    result = vector_index.index_rebuild()
    return _index_action_response(
        request,
        message=(
            f"Rebuilt {result.total_documents} source{'s' if result.total_documents != 1 else ''}"
            f" into {result.total_entries} chunks in {result.duration_ms} ms:"
            f" {result.embeddings_kept} kept their vectors, {result.queued} queued for embedding."
        ),
    )


@require_POST
@staff_required
def index_clear(request: HttpRequest) -> HttpResponse:
    cleared = vector_index.index_clear()
    return _index_action_response(
        request,
        message=(
            f"Dropped the vectors of {cleared} chunk{'s' if cleared != 1 else ''};"
            " the chunks are queued for embedding again."
        ),
    )


@require_POST
@staff_required
def index_switch(request: HttpRequest) -> HttpResponse:
    return _index_action_response(request, message=embedding_switch_start().message)


# --- Search -----------------------------------------------------------------------------------

SEARCH_TOP_K_CHOICES = (5, 10, 20, 50)
SEARCH_DEFAULT_TOP_K = 10
SEARCH_MODE_HINTS = {
    "hybrid": "Meaning and exact words, fused by rank",
    "vector": "Meaning: similar passages, in any wording or language",
    "keyword": "Exact words: error codes, model numbers, names",
}
# Values of the sources' `language` metadata offered as a filter.
SEARCH_LANGUAGES = (("en", "English"), ("zh-TW", "繁體中文"), ("ja", "日本語"))


def _search_hit_rows(result: SearchResult) -> list[dict]:
    """Each hit with its type label, its score as a share of the best hit's (the bar), and the
    ranks it had in the vector and keyword lists."""
    labels = dict(SourceType.choices)
    best = max((hit.score for hit in result.hits), default=0.0)
    # A fused hit missing from one list says so; elsewhere only the list that ran is shown.
    show_missing = result.mode == "hybrid" and not result.degraded
    rows = []
    for hit in result.hits:
        ranks = [
            {"kind": kind, "rank": rank, "score": score}
            for kind, rank, score in (
                ("vector", hit.vector_rank, hit.vector_score),
                ("keyword", hit.keyword_rank, hit.keyword_score),
            )
            if rank is not None or show_missing
        ]
        rows.append(
            {
                "hit": hit,
                "type_label": labels.get(hit.source_type, hit.source_type),
                "bar": round(100 * max(hit.score, 0.0) / best) if best > 0 else 0,
                "ranks": ranks,
            }
        )
    return rows


@require_GET
@login_required
@vary_on_headers("HX-Request")
def search_page(request: HttpRequest) -> HttpResponse:
    """The search box. Input goes to the search service as typed: it owns validation, so a bad
    top_k or mode in the URL comes back as its error code, shown on the page."""
    query = request.GET.get("q", "")
    mode = request.GET.get("mode") or "hybrid"
    top_k: int | str = request.GET.get("top_k") or SEARCH_DEFAULT_TOP_K
    try:
        top_k = int(top_k)
    except ValueError:
        pass  # left as typed: the service answers VECTOR_INDEX_INVALID_TOP_K
    source_types = request.GET.getlist("type")
    language = request.GET.get("language", "")
    filters: dict = {"source_type": source_types}
    if language:
        filters["metadata"] = {"language": language}

    context: dict = {
        "query": query,
        "mode": mode,
        "top_k": top_k,
        "source_types": source_types,
        "language": language,
        # The default first, then the service's order.
        "modes": [
            (name, SEARCH_MODE_HINTS.get(name, ""))
            for name in sorted(MODES, key=lambda name: name != "hybrid")
        ],
        "source_type_choices": SourceType.choices,
        "language_choices": SEARCH_LANGUAGES,
        "top_k_choices": SEARCH_TOP_K_CHOICES,
        "result": None,
        "error": None,
    }
    status = 200
    if query.strip():
        try:
            result = chunk_search(query, mode=mode, top_k=top_k, filters=filters)
        except SearchError as exc:
            context["error"] = exc
            status = exc.status
        else:
            context["result"] = result
            context["rows"] = _search_hit_rows(result)
    if wants_fragment(request):
        # HTMX swaps only 2xx answers by default; the error is part of the fragment.
        return render(request, "knowledge/_search_results.html", context)
    return render(request, "knowledge/search.html", context, status=status)


# --- Ask ----------------------------------------------------------------------------------------

ASK_TOP_K_CHOICES = (3, 5, 8, 12)
CITATION_MARK = re.compile(r"\[(\d{1,3})\]")


def answer_html(answer: Answer) -> str:
    """The answer text, escaped, with each [n] linked to the chunk it cites."""
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
@login_required
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
@login_required
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
@login_required
@vary_on_headers("HX-Request")
def answer_detail(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = get_object_or_404(queries.answers_with_sources(), pk=answer_id)
    template = (
        "knowledge/_answer.html" if wants_fragment(request) else "knowledge/answer_detail.html"
    )
    return render(request, template, _answer_context(answer))


@require_POST
@staff_required
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
@login_required
def answer_queue(request: HttpRequest) -> HttpResponse:
    """Not-helpful answers for curators, each with the passages it was given."""
    page = Paginator(queries.answers_needing_curation(), 25).get_page(request.GET.get("page"))
    rows = [_answer_context(answer) for answer in page]
    return render(request, "knowledge/answer_queue.html", {"page": page, "rows": rows})


@require_GET
@login_required
def content_gaps(request: HttpRequest) -> HttpResponse:
    return render(request, "knowledge/content_gaps.html", {"gaps": queries.content_gaps()})
