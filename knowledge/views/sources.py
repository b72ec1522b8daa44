"""Curator pages: list and upload sources, read and edit their chunks.

HTMX requests get the partial they swap; plain requests get whole pages, so every action also
works without JavaScript.
"""

import json

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from core.pages import permission_required, wants_fragment
from core.replicas import replica_reads
from knowledge import queries
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
from knowledge.models import KnowledgeChunk, KnowledgeSource
from knowledge.services import CurationError, chunk_update, sources_set_enabled

SOURCES_PER_PAGE = 50
CHUNKS_PER_PAGE = 100

# Events sent in HX-Trigger; the source table and the source header listen for them.
SOURCES_CHANGED = "sources-changed"
SOURCE_CHANGED = "source-changed"


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
@permission_required("knowledge.view_knowledgesource")
@vary_on_headers("HX-Request")
@replica_reads
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
@permission_required("knowledge.add_knowledgesource")
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
@permission_required("knowledge.add_knowledgesource")
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
@permission_required("knowledge.view_knowledgesource")
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
@permission_required("knowledge.change_knowledgesource")
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
@permission_required("knowledge.view_knowledgechunk")
@vary_on_headers("HX-Request")
def chunk_detail(request: HttpRequest, chunk_id: int) -> HttpResponse:
    """The chunk's row for HTMX (Cancel in the edit form); otherwise a redirect to its anchor."""
    return _chunk_row(request, get_object_or_404(KnowledgeChunk, pk=chunk_id))


@require_http_methods(["GET", "POST"])
@permission_required("knowledge.change_knowledgechunk")
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
@permission_required("knowledge.change_knowledgechunk")
def chunk_set_flags(request: HttpRequest, chunk_id: int) -> HttpResponse:
    chunk = get_object_or_404(KnowledgeChunk, pk=chunk_id)
    form = ChunkFlagsForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Send enabled=true|false or pinned=true|false.")
    chunk_update(
        chunk=chunk, enabled=form.cleaned_data["enabled"], pinned=form.cleaned_data["pinned"]
    )
    return _chunk_row(request, chunk)
