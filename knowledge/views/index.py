"""The vector index page: how far it is built, and rebuilding, clearing or switching it.

HTMX requests get the partial they swap; plain requests get whole pages, so every action also
works without JavaScript.
"""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from core.pages import permission_required, wants_fragment
from core.queries import slow_statements
from core.replicas import replica_reads
from knowledge import queries
from knowledge.embed import vector_index
from knowledge.embed.spaces import embedding_switch_start

# Sent after a rebuild or a clear; the index status listens for it.
INDEX_CHANGED = "index-changed"


@require_GET
@permission_required("knowledge.view_knowledgechunk")
@vary_on_headers("HX-Request")
@replica_reads
def index_status(request: HttpRequest) -> HttpResponse:
    context = {"status": queries.index_status()}
    if wants_fragment(request):
        # Polled every few seconds while chunks wait for embedding.
        return render(request, "knowledge/_index_status.html", context)
    if request.user.is_staff:
        # Beside the index sizes, read once per page (not by the fragment's polling).
        context["slow"] = slow_statements()
    return render(request, "knowledge/index_status.html", context)


def _index_action_response(request: HttpRequest, *, message: str) -> HttpResponse:
    if wants_fragment(request):
        response = render(request, "knowledge/_index_action_result.html", {"message": message})
        response["HX-Trigger"] = INDEX_CHANGED
        return response
    messages.success(request, message)
    return redirect("knowledge:index-status")


@require_POST
@permission_required("knowledge.manage_index")
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
@permission_required("knowledge.manage_index")
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
@permission_required("knowledge.manage_index")
def index_switch(request: HttpRequest) -> HttpResponse:
    return _index_action_response(request, message=embedding_switch_start().message)
