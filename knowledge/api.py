import json
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, Form, Query, Router, Status
from ninja.files import UploadedFile

from core.auth import read_auth, write_auth
from core.errors import ApiError, ErrorCode
from knowledge import queries
from knowledge.ingestion import IngestError, IngestResult, source_ingest_file, source_ingest_text
from knowledge.models import KnowledgeChunk, KnowledgeSource, SourceStatus, SourceType
from knowledge.schemas import (
    ChunkOut,
    ChunkPage,
    ChunkPatchIn,
    IngestOut,
    SourceOut,
    SourcePage,
    SourcePatchIn,
    SourceTextIn,
    SourceWebIn,
)
from knowledge.services import UNSET, CurationError, chunk_update, source_delete, source_update
from knowledge.web import WebFetchError, web_source_fetch

router = Router(tags=["sources"])


def _upload_limit() -> int:
    return settings.KIOKU_MAX_UPLOAD_BYTES


def _too_large(size: int) -> ApiError:
    limit = _upload_limit()
    return ApiError(
        "SOURCE_TOO_LARGE",
        f"The document is {size:,} bytes; the limit is {limit:,} bytes (KIOKU_MAX_UPLOAD_BYTES).",
        status=413,
        details={"size": size, "limit": limit},
    )


def _ingest_response(result: IngestResult):
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


def _domain_error(exc: IngestError | CurationError) -> ApiError:
    return ApiError(exc.code, exc.message)


def _page(queryset, limit: int, offset: int) -> dict:
    return {
        "count": queryset.count(),
        "limit": limit,
        "offset": offset,
        "items": list(queryset[offset : offset + limit]),
    }


@router.post(
    "/sources",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Create or update a source from text",
)
def source_create_from_text(request: HttpRequest, payload: SourceTextIn):
    size = len(payload.text.encode("utf-8", errors="replace"))
    if size > _upload_limit():
        raise _too_large(size)
    try:
        result = source_ingest_text(
            text=payload.text,
            text_format=payload.format,
            source_type=payload.source_type,
            title=payload.title,
            uri=payload.uri,
            metadata=payload.metadata,
        )
    except IngestError as exc:
        raise _domain_error(exc) from None
    return _ingest_response(result)


@router.post(
    "/sources/upload",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Create or update a source from a file",
)
def source_create_from_file(
    request: HttpRequest,
    file: File[UploadedFile],
    source_type: Form[SourceType] = SourceType.DOCUMENT,
    title: Form[str] = "",
    uri: Form[str] = "",
    metadata: Form[str] = "{}",
):
    if file.size > _upload_limit():
        raise _too_large(file.size)
    try:
        parsed_metadata = json.loads(metadata or "{}")
    except ValueError:
        parsed_metadata = None
    if not isinstance(parsed_metadata, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "metadata must be a JSON object.", status=422)
    try:
        result = source_ingest_file(
            data=file.read(),
            filename=file.name,
            content_type=file.content_type,
            source_type=source_type,
            title=title or None,
            uri=uri,
            metadata=parsed_metadata,
        )
    except IngestError as exc:
        raise _domain_error(exc) from None
    return _ingest_response(result)


@router.post(
    "/sources/web",
    response={200: IngestOut, 201: IngestOut},
    auth=write_auth,
    summary="Fetch a web page as a source",
)
def source_create_from_url(request: HttpRequest, payload: SourceWebIn):
    interval = (
        timedelta(minutes=payload.fetch_interval_minutes)
        if payload.fetch_interval_minutes
        else None
    )
    try:
        result = web_source_fetch(
            url=payload.url,
            source_type=payload.source_type,
            title=payload.title or None,
            metadata=payload.metadata,
            fetch_interval=interval,
        )
    except WebFetchError as exc:
        raise ApiError(
            exc.code, exc.message, status=422 if exc.code == "WEB_INVALID_URL" else 502
        ) from None
    except IngestError as exc:
        raise _domain_error(exc) from None
    return _ingest_response(result)


@router.get("/sources", response=SourcePage, auth=read_auth, summary="List sources")
def source_list(
    request: HttpRequest,
    source_type: SourceType | None = None,
    status: SourceStatus | None = None,
    enabled: bool | None = None,
    q: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
):
    sources = queries.source_list(source_type=source_type, status=status, enabled=enabled, query=q)
    return _page(sources, limit, offset)


@router.get("/sources/{source_id}", response=SourceOut, auth=read_auth, summary="Get a source")
def source_get(request: HttpRequest, source_id: int):
    return get_object_or_404(queries.sources_with_counts(), pk=source_id)


@router.patch(
    "/sources/{source_id}",
    response=SourceOut,
    auth=write_auth,
    summary="Update a source's metadata",
)
def source_patch(request: HttpRequest, source_id: int, payload: SourcePatchIn):
    source = get_object_or_404(KnowledgeSource, pk=source_id)
    interval = UNSET
    if "fetch_interval_minutes" in payload.model_fields_set:
        minutes = payload.fetch_interval_minutes
        interval = timedelta(minutes=minutes) if minutes else None
    try:
        source_update(
            source=source,
            title=payload.title,
            source_type=payload.source_type,
            metadata=payload.metadata,
            replace_metadata=payload.replace_metadata,
            enabled=payload.enabled,
            fetch_interval=interval,
        )
    except CurationError as exc:
        raise _domain_error(exc) from None
    return queries.sources_with_counts().get(pk=source.pk)


@router.delete(
    "/sources/{source_id}",
    response={204: None},
    auth=write_auth,
    summary="Delete a source and its chunks",
)
def source_remove(request: HttpRequest, source_id: int):
    source_delete(source=get_object_or_404(KnowledgeSource, pk=source_id))
    return Status(204, None)


@router.get(
    "/sources/{source_id}/chunks",
    response=ChunkPage,
    auth=read_auth,
    summary="List a source's chunks",
)
def source_chunk_list(
    request: HttpRequest,
    source_id: int,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
):
    get_object_or_404(KnowledgeSource, pk=source_id)
    return _page(queries.source_chunks(source_id=source_id), limit, offset)


@router.get("/chunks/{chunk_id}", response=ChunkOut, auth=read_auth, summary="Get a chunk")
def chunk_get(request: HttpRequest, chunk_id: int):
    return get_object_or_404(KnowledgeChunk, pk=chunk_id)


@router.patch("/chunks/{chunk_id}", response=ChunkOut, auth=write_auth, summary="Edit a chunk")
def chunk_patch(request: HttpRequest, chunk_id: int, payload: ChunkPatchIn):
    chunk = get_object_or_404(KnowledgeChunk, pk=chunk_id)
    valid_until = UNSET
    if payload.clear_valid_until:
        valid_until = None
    elif payload.valid_until is not None:
        valid_until = payload.valid_until
    try:
        return chunk_update(
            chunk=chunk,
            content=payload.content,
            enabled=payload.enabled,
            pinned=payload.pinned,
            valid_until=valid_until,
        )
    except CurationError as exc:
        raise _domain_error(exc) from None
