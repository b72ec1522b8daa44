import json
from dataclasses import asdict
from datetime import timedelta

from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import File, Form, Query, Router, Status
from ninja.decorators import decorate_view
from ninja.files import UploadedFile

from core.auth import admin_auth, read_auth, write_auth
from core.errors import ApiError, ErrorCode
from core.pagination import Page, limit_param, offset_param, page_of
from core.replicas import replica_reads
from core.schemas import errors
from core.uploads import upload_limited
from knowledge import queries
from knowledge.answer.answering import answer_ask, answer_ask_stream, answer_feedback, ask_validate
from knowledge.answer.sse import event_stream_response
from knowledge.embed.pipeline import dead_letters_retry
from knowledge.embed.spaces import embedding_switch_start
from knowledge.embed.vector_index import index_clear, index_rebuild
from knowledge.ingest.base import IngestResult
from knowledge.ingest.ingestion import (
    source_ingest_file,
    source_ingest_text,
    upload_size_check,
)
from knowledge.ingest.web_sources import web_source_fetch
from knowledge.models import (
    Answer,
    DeadLetterChunk,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
    SourceType,
)
from knowledge.schemas import (
    AnswerOut,
    AskIn,
    ChunkOut,
    ChunkPage,
    ChunkPatchIn,
    DeadLetterPage,
    DeadLetterRetryIn,
    DeadLetterRetryOut,
    FeedbackIn,
    IndexBuildOut,
    IndexClearOut,
    IndexStatusOut,
    IndexSwitchOut,
    IngestOut,
    SearchIn,
    SearchOut,
    SourceOut,
    SourcePage,
    SourcePatchIn,
    SourceTextIn,
    SourceWebIn,
)
from knowledge.search.base import SearchResult
from knowledge.search.service import chunk_search
from knowledge.services import UNSET, chunk_update, source_delete, source_update

router = Router(tags=["sources"])


def _ingest_response(result: IngestResult) -> Status[dict]:
    if result.outcome == "failed":
        raise ApiError(
            result.error_code,
            result.error_message,
            status=422,
            details={"source_id": result.source.pk},
        )
    source = queries.sources_with_counts().get(pk=result.source.pk)
    body = {
        "outcome": result.outcome,
        "chunks": result.chunks,
        "tokens": result.tokens,
        "embeddings_kept": result.embeddings_kept,
        "source": source,
    }
    return Status(201 if result.outcome == "created" else 200, body)


@router.post(
    "/sources",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Create or update a source from text",
)
def source_create_from_text(request: HttpRequest, payload: SourceTextIn) -> Status[dict]:
    result = source_ingest_text(
        text=payload.text,
        text_format=payload.format,
        source_type=payload.source_type,
        title=payload.title,
        uri=payload.uri,
        metadata=payload.metadata,
    )
    return _ingest_response(result)


@router.post(
    "/sources/upload",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Create or update a source from a file",
)
@decorate_view(upload_limited(upload_size_check))
def source_create_from_file(
    request: HttpRequest,
    file: File[UploadedFile],
    source_type: Form[SourceType] = SourceType.DOCUMENT,
    title: Form[str] = "",
    uri: Form[str] = "",
    metadata: Form[str] = "{}",
) -> Status[dict]:
    try:
        parsed_metadata = json.loads(metadata or "{}")
    except ValueError:
        parsed_metadata = None
    if not isinstance(parsed_metadata, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "metadata must be a JSON object.", status=422)
    result = source_ingest_file(
        data=file.read(),
        filename=file.name,
        content_type=file.content_type,
        source_type=source_type,
        title=title or None,
        uri=uri,
        metadata=parsed_metadata,
    )
    return _ingest_response(result)


@router.post(
    "/sources/web",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Fetch a web page as a source",
)
def source_create_from_url(request: HttpRequest, payload: SourceWebIn) -> Status[dict]:
    interval = (
        timedelta(minutes=payload.fetch_interval_minutes)
        if payload.fetch_interval_minutes
        else None
    )
    result = web_source_fetch(
        url=payload.url,
        source_type=payload.source_type,
        title=payload.title or None,
        metadata=payload.metadata,
        fetch_interval=interval,
    )
    return _ingest_response(result)


@router.get("/sources", response=SourcePage, auth=read_auth, summary="List sources")
@replica_reads
def source_list(
    request: HttpRequest,
    source_type: SourceType | None = None,
    status: SourceStatus | None = None,
    enabled: bool | None = None,
    q: str | None = Query(None, max_length=200),
    limit: int = limit_param(50, 200),
    offset: int = offset_param(),
) -> Page:
    sources = queries.source_list(source_type=source_type, status=status, enabled=enabled, query=q)
    return page_of(sources, limit=limit, offset=offset)


@router.get("/sources/{source_id}", response=SourceOut, auth=read_auth, summary="Get a source")
def source_get(request: HttpRequest, source_id: int) -> KnowledgeSource:
    return get_object_or_404(queries.sources_with_counts(), pk=source_id)


@router.patch(
    "/sources/{source_id}",
    response=SourceOut,
    auth=write_auth,
    summary="Update a source's metadata",
)
def source_patch(request: HttpRequest, source_id: int, payload: SourcePatchIn) -> KnowledgeSource:
    source = get_object_or_404(KnowledgeSource, pk=source_id)
    interval = UNSET
    if "fetch_interval_minutes" in payload.model_fields_set:
        minutes = payload.fetch_interval_minutes
        interval = timedelta(minutes=minutes) if minutes else None
    source_update(
        source=source,
        title=payload.title,
        source_type=payload.source_type,
        metadata=payload.metadata,
        replace_metadata=payload.replace_metadata,
        enabled=payload.enabled,
        fetch_interval=interval,
    )
    return queries.sources_with_counts().get(pk=source.pk)


@router.delete(
    "/sources/{source_id}",
    response={204: None},
    auth=write_auth,
    summary="Delete a source and its chunks",
)
def source_remove(request: HttpRequest, source_id: int) -> Status[None]:
    source_delete(source=get_object_or_404(KnowledgeSource, pk=source_id))
    return Status(204, None)


@router.get(
    "/sources/{source_id}/chunks",
    response=ChunkPage,
    auth=read_auth,
    summary="List a source's chunks",
)
@replica_reads
def source_chunk_list(
    request: HttpRequest,
    source_id: int,
    limit: int = limit_param(50, 500),
    offset: int = offset_param(),
) -> Page:
    get_object_or_404(KnowledgeSource, pk=source_id)
    return page_of(queries.source_chunks(source_id=source_id), limit=limit, offset=offset)


@router.get("/chunks/{chunk_id}", response=ChunkOut, auth=read_auth, summary="Get a chunk")
def chunk_get(request: HttpRequest, chunk_id: int) -> KnowledgeChunk:
    return get_object_or_404(KnowledgeChunk, pk=chunk_id)


@router.patch("/chunks/{chunk_id}", response=ChunkOut, auth=write_auth, summary="Edit a chunk")
def chunk_patch(request: HttpRequest, chunk_id: int, payload: ChunkPatchIn) -> KnowledgeChunk:
    chunk = get_object_or_404(KnowledgeChunk, pk=chunk_id)
    valid_until = UNSET
    if payload.clear_valid_until:
        valid_until = None
    elif payload.valid_until is not None:
        valid_until = payload.valid_until
    return chunk_update(
        chunk=chunk,
        content=payload.content,
        enabled=payload.enabled,
        pinned=payload.pinned,
        valid_until=valid_until,
    )


# --- The vector index ---------------------------------------------------------------------------


@router.get(
    "/index/status",
    response=IndexStatusOut,
    auth=read_auth,
    tags=["index"],
    summary="How far the vector index is built",
)
@replica_reads
def index_status_get(request: HttpRequest) -> dict:
    return queries.index_status()


@router.post(
    "/index/rebuild",
    response=IndexBuildOut,
    auth=admin_auth,
    tags=["index"],
    summary="Re-chunk every source and queue what needs embedding",
)
def index_rebuild_run(request: HttpRequest) -> dict[str, int]:
    result = index_rebuild()
    return {
        "documents": result.total_documents,
        "entries": result.total_entries,
        "duration_ms": result.duration_ms,
    }


@router.post(
    "/index/clear",
    response=IndexClearOut,
    auth=admin_auth,
    tags=["index"],
    summary="Drop every vector (chunks and text stay) and queue them for embedding",
)
def index_clear_run(request: HttpRequest) -> dict[str, int]:
    return {"cleared": index_clear()}


@router.post(
    "/index/switch",
    response=IndexSwitchOut,
    auth=admin_auth,
    tags=["index"],
    summary="Re-embed everything with the configured model and size, then switch search to it",
    description="Search keeps using the current vectors until every row has a new one. Safe to "
    "call again: it reports progress.",
)
def index_switch_run(request: HttpRequest) -> dict:
    return asdict(embedding_switch_start())


@router.get(
    "/index/dead-letters",
    response=DeadLetterPage,
    auth=read_auth,
    tags=["index"],
    summary="Chunks whose embedding failed too often",
)
def dead_letter_list(
    request: HttpRequest, limit: int = limit_param(50, 200), offset: int = offset_param()
) -> Page:
    return page_of(DeadLetterChunk.objects.order_by("id"), limit=limit, offset=offset)


@router.post(
    "/index/dead-letters/retry",
    response=DeadLetterRetryOut,
    auth=admin_auth,
    tags=["index"],
    summary="Retry dead letters",
)
def dead_letter_retry(request: HttpRequest, payload: DeadLetterRetryIn) -> dict[str, int]:
    return {"queued": dead_letters_retry(ids=payload.ids)}


@router.post(
    "/search",
    response={200: SearchOut, **errors(409)},
    auth=read_auth,
    tags=["search"],
    summary="Search the knowledge base",
)
@replica_reads
def knowledge_search(request: HttpRequest, payload: SearchIn) -> SearchResult:
    """Vector, keyword or hybrid (default) search. Errors: SEARCH_EMPTY_QUERY,
    VECTOR_INDEX_INVALID_TOP_K, SEARCH_INVALID_FILTER, SEARCH_INVALID_MODE, VECTOR_INDEX_EMPTY,
    VECTOR_INDEX_NOT_AVAILABLE, VECTOR_INDEX_EMBEDDING_GENERATION_FAILED,
    SEARCH_RERANKER_NOT_CONFIGURED (409: `rerank: true` without a reranker). A failing reranker
    does not fail the search: the fused order comes back with `degraded: true`."""
    return chunk_search(
        payload.query,
        mode=payload.mode,
        top_k=payload.top_k,
        filters=payload.filters,
        min_similarity=payload.min_similarity,
        rerank=payload.rerank,
    )


@router.post(
    "/ask",
    response={200: AnswerOut, **errors(502)},
    auth=read_auth,
    tags=["answers"],
    summary="Ask a question",
)
@replica_reads
def ask(request: HttpRequest, payload: AskIn) -> Answer:
    """The answer with numbered citations [n] to the passages it used. Without an index: the
    "index not built" answer; nothing relevant: the "no relevant documents" answer (no model
    call). Offline (no OpenAI key): an extractive answer, `mode: offline`."""
    answer = answer_ask(
        question=payload.question,
        top_k=payload.top_k,
        filters=payload.filters,
        channel="api",
        api_key=request.auth,
    )
    return queries.answer_detail(answer.pk)


@router.post(
    "/ask/stream",
    auth=read_auth,
    tags=["answers"],
    summary="Ask a question, streamed as server-sent events",
    response={200: None, **errors(502)},
    openapi_extra={"responses": {200: {"content": {"text/event-stream": {}}}}},
)
def ask_stream(request: HttpRequest, payload: AskIn) -> StreamingHttpResponse:
    """`text/event-stream` events: `sources` ({sources: [{number, chunk_id, chunk_url,
    source_id, source_title, …}], mode, language}), `delta` ({text}) as the answer is written,
    then `done` ({answer_id, answer, outcome, cited}) or `error` ({code, message}). A request
    that is invalid before anything runs gets the usual JSON error instead."""
    ask_validate(question=payload.question, top_k=payload.top_k, filters=payload.filters)
    events = answer_ask_stream(
        question=payload.question,
        top_k=payload.top_k,
        filters=payload.filters,
        channel="api",
        api_key=request.auth,
    )
    return event_stream_response(events)


@router.get(
    "/answers/{answer_id}",
    response=AnswerOut,
    auth=read_auth,
    tags=["answers"],
    summary="One stored answer",
)
def answer_get(request: HttpRequest, answer_id: int) -> Answer:
    return get_object_or_404(queries.answers_with_sources(), pk=answer_id)


@router.post(
    "/answers/{answer_id}/feedback",
    response=AnswerOut,
    auth=read_auth,
    tags=["answers"],
    summary="Helpful or not (+ comment)",
)
def answer_feedback_create(request: HttpRequest, answer_id: int, payload: FeedbackIn) -> Answer:
    """Not helpful puts the answer in the curation queue. Read keys may give feedback: the
    clients that ask (bots, widgets) are the ones that hear whether an answer helped."""
    answer = get_object_or_404(Answer, pk=answer_id)
    answer_feedback(
        answer=answer,
        is_helpful=payload.helpful,
        comment=payload.comment,
        by=f"api:{request.auth.name}",
    )
    return queries.answer_detail(answer.pk)
