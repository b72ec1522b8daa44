"""The search page: one query box, modes, filters and results that swap in over HTMX.

HTMX requests get the partial they swap; plain requests get whole pages, so every action also
works without JavaScript.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from core.pages import permission_required, wants_fragment
from core.replicas import replica_reads
from knowledge.models import SourceType
from knowledge.search.base import MODES, SearchError, SearchResult
from knowledge.search.service import chunk_search

SEARCH_TOP_K_CHOICES = (5, 10, 20, 50)
SEARCH_DEFAULT_TOP_K = 10
SEARCH_MODE_HINTS = {
    "hybrid": "Meaning and exact words, fused by rank",
    "vector": "Meaning: similar passages, in any wording or language",
    "keyword": "Exact words: error codes, model numbers, names",
}
# Values of the sources' `language` metadata offered as a filter.
SEARCH_LANGUAGES = (("en", "English"), ("zh-TW", "繁體中文"), ("ja", "日本語"))


def search_hit_rows(result: SearchResult) -> list[dict]:
    """Each hit with its type label, its score as a share of the best hit's (the bar), and the
    ranks it had in the vector and keyword lists (and the reranker's score, when one ran)."""
    labels = dict(SourceType.choices)
    best = max((hit.score for hit in result.hits), default=0.0)
    # A fused hit missing from one list says so; elsewhere only the list that ran is shown.
    show_missing = result.mode == "hybrid" and not result.keyword_only
    rows = []
    for position, hit in enumerate(result.hits, 1):
        ranks = [
            {"kind": kind, "rank": rank, "score": score}
            for kind, rank, score in (
                ("vector", hit.vector_rank, hit.vector_score),
                ("keyword", hit.keyword_rank, hit.keyword_score),
            )
            if rank is not None or show_missing
        ]
        if hit.rerank_score is not None:
            ranks.append({"kind": "rerank", "rank": position, "score": hit.rerank_score})
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
@permission_required("knowledge.view_knowledgechunk")
@vary_on_headers("HX-Request")
@replica_reads
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
    # "off" skips a configured reranker for this search; anything else follows the setting.
    rerank_off = request.GET.get("rerank") == "off"
    filters: dict = {"source_type": source_types}
    if language:
        filters["metadata"] = {"language": language}

    context: dict = {
        "query": query,
        "mode": mode,
        "top_k": top_k,
        "source_types": source_types,
        "language": language,
        "reranker_configured": bool(settings.KIOKU_RERANKER),
        "rerank_off": rerank_off,
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
            result = chunk_search(
                query,
                mode=mode,
                top_k=top_k,
                filters=filters,
                rerank=False if rerank_off else None,
            )
        except SearchError as exc:
            context["error"] = exc
            status = exc.status
        else:
            context["result"] = result
            context["rows"] = search_hit_rows(result)
    if wants_fragment(request):
        # HTMX swaps only 2xx answers by default; the error is part of the fragment.
        return render(request, "knowledge/_search_results.html", context)
    return render(request, "knowledge/search.html", context, status=status)
