"""Web sources: fetch a URL (http/https only, with timeouts and a size limit), ingest it, and
re-fetch it on a schedule."""

import ipaddress
import logging
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from core.errors import ApiError
from knowledge.errors import (
    WEB_FETCH_FAILED,
    WEB_FETCH_TIMEOUT,
    WEB_FORBIDDEN_HOST,
    WEB_INVALID_URL,
    WEB_TOO_LARGE,
)
from knowledge.ingest.base import IngestResult
from knowledge.ingest.ingestion import source_ingest_file
from knowledge.models import KnowledgeSource, SourceStatus, SourceType
from knowledge.services import source_update

logger = logging.getLogger(__name__)
USER_AGENT = "Kioku/0.1 (+knowledge-base fetcher)"


class WebFetchError(ApiError):
    def __init__(self, code: str, message: str) -> None:
        # A bad URL is the caller's to fix; anything else went wrong at the remote site.
        super().__init__(code, message, status=422 if code == WEB_INVALID_URL else 502)


def validate_url(url: str) -> str:
    """Accept only absolute http(s) URLs; refuse private and loopback hosts unless allowed."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise WebFetchError(WEB_INVALID_URL, "Only http:// and https:// URLs can be fetched.")
    if not parts.hostname:
        raise WebFetchError(WEB_INVALID_URL, "The URL has no host name.")
    if not settings.KIOKU_WEB_ALLOW_PRIVATE_HOSTS:
        for address in _addresses(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        ):
            if not address.is_global:
                raise WebFetchError(
                    WEB_FORBIDDEN_HOST,
                    f"{parts.hostname} resolves to a private or local address ({address}); "
                    "set KIOKU_WEB_ALLOW_PRIVATE_HOSTS=true to allow intranet pages.",
                )
    return url


def _addresses(host: str, port: int) -> list:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebFetchError(WEB_FETCH_FAILED, f"Cannot resolve {host}: {exc.strerror}.") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def fetch_url(url: str) -> tuple[bytes, str | None, str]:
    """GET the URL; return (body, content type, final URL). Stops reading past the size limit."""
    limit = settings.KIOKU_WEB_MAX_BYTES
    timeout = httpx.Timeout(settings.KIOKU_WEB_TIMEOUT_SECONDS)
    try:
        with (
            httpx.Client(
                timeout=timeout,
                follow_redirects=True,
                max_redirects=5,
                headers={"User-Agent": USER_AGENT},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise WebFetchError(
                    WEB_FETCH_FAILED,
                    f"The server answered HTTP {response.status_code} for {url}.",
                )
            if response.url != url:
                validate_url(str(response.url))  # a redirect must not lead somewhere forbidden
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > limit:
                raise _too_large(limit)
            body = bytearray()
            for piece in response.iter_bytes():
                body.extend(piece)
                if len(body) > limit:
                    raise _too_large(limit)
            return bytes(body), response.headers.get("Content-Type"), str(response.url)
    except httpx.TimeoutException:
        raise WebFetchError(
            WEB_FETCH_TIMEOUT,
            f"No answer from {url} within {settings.KIOKU_WEB_TIMEOUT_SECONDS} s.",
        ) from None
    except httpx.HTTPError as exc:
        raise WebFetchError(WEB_FETCH_FAILED, f"Could not fetch {url}: {exc}.") from None


def _too_large(limit: int) -> WebFetchError:
    return WebFetchError(
        WEB_TOO_LARGE, f"The page is larger than {limit:,} bytes (KIOKU_WEB_MAX_BYTES)."
    )


def web_source_fetch(
    *,
    url: str,
    source_type: str = SourceType.WEB,
    title: str | None = None,
    metadata: dict | None = None,
    fetch_interval: timedelta | None = None,
) -> IngestResult:
    """Fetch and ingest a URL. Fetch failures are recorded on the source (status failed) when it
    already exists; a first fetch that fails raises WebFetchError and stores nothing."""
    url = validate_url(url)
    existing = KnowledgeSource.objects.filter(uri=url).first()
    try:
        body, content_type, final_url = fetch_url(url)
    except WebFetchError as exc:
        if existing is None:
            raise
        _record_fetch_failure(existing, exc)
        return IngestResult(
            source=existing, outcome="failed", error_code=exc.code, error_message=exc.message
        )
    filename = urlsplit(final_url).path.rsplit("/", 1)[-1] or None
    result = source_ingest_file(
        data=body,
        filename=filename if filename and "." in filename else None,
        content_type=content_type or "text/html",
        source_type=source_type,
        title=title,
        uri=url,
        metadata={**(metadata or {}), "final_url": final_url} if final_url != url else metadata,
    )
    if fetch_interval is not None and result.source.fetch_interval != fetch_interval:
        source_update(source=result.source, fetch_interval=fetch_interval)
    return result


def _record_fetch_failure(source: KnowledgeSource, exc: WebFetchError) -> None:
    logger.warning("Re-fetch of %s failed: %s", source.uri, exc.message)
    KnowledgeSource.objects.filter(pk=source.pk).update(
        status=SourceStatus.FAILED,
        error_code=exc.code,
        error_message=exc.message,
        fetched_at=timezone.now(),
        updated_at=timezone.now(),
    )


def web_sources() -> QuerySet[KnowledgeSource]:
    """Sources fetched from the web (an http(s) uri), whatever their re-fetch interval."""
    return KnowledgeSource.objects.filter(
        Q(uri__startswith="http://") | Q(uri__startswith="https://")
    )


def web_sources_due() -> QuerySet[KnowledgeSource]:
    """Web sources whose re-fetch interval has passed."""
    return (
        web_sources()
        .filter(fetch_interval__isnull=False)
        .filter(Q(fetched_at__isnull=True) | Q(fetched_at__lte=Now() - F("fetch_interval")))
        .order_by("fetched_at")
    )


def web_sources_refresh(*, limit: int = 50) -> dict[str, int]:
    """Re-fetch due web sources (unchanged pages write nothing). Used by the schedule."""
    counts: dict[str, int] = {}
    for source in web_sources_due()[:limit]:
        outcome = web_source_refetch(source=source).outcome
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def web_source_refetch(*, source: KnowledgeSource) -> IngestResult:
    """Fetch a stored web source again (the schedule, a LINE `sync`); a failure of any kind to
    fetch it is recorded on the source (status failed) and returned, never raised."""
    try:
        return web_source_fetch(url=source.uri, source_type=source.source_type)
    except WebFetchError as exc:  # e.g. its host now resolves to a private address
        _record_fetch_failure(source, exc)
        return IngestResult(
            source=source, outcome="failed", error_code=exc.code, error_message=exc.message
        )
