"""What every call to OpenAI (or an OpenAI-compatible server) shares, for embeddings and chat
alike: what kind of failure an exception is, the server's own message, how long it asks us to
wait, and how long to wait before the next attempt.

| kind           | cause                                     | transient |
|----------------|-------------------------------------------|-----------|
| `timeout`      | no answer within the client's timeout     | yes       |
| `connection`   | the server could not be reached           | yes       |
| `rate_limited` | 429 (not `insufficient_quota`)            | yes       |
| `server`       | 5xx, 408, 409                             | yes       |
| `quota`        | 429 `insufficient_quota`: out of credit   | no        |
| `auth`         | 401, 403                                  | no        |
| `not_found`    | 404 (model or URL)                        | no        |
| `bad_request`  | 400, 413, 422                             | no        |
| `unexpected`   | anything else                             | no        |
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openai

TRANSIENT_KINDS = frozenset({"timeout", "connection", "rate_limited", "server"})
# Exponential backoff with full jitter: a random wait up to 0.5 s × 2ⁿ⁻¹, capped.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_SECONDS = 30.0


@dataclass(frozen=True)
class CallFailure:
    kind: str
    detail: str  # the server's message, or what went wrong
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked us to wait, if it said
    param: str = ""  # the request parameter the server blamed, if it named one

    @property
    def is_transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    @property
    def message(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status is not None else self.detail


def call_failure(exc: openai.OpenAIError, *, timeout: float, server: str) -> CallFailure:
    """Classify an exception of the `openai` client (`server` names the server in messages:
    "embedding server", "chat server")."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return CallFailure("timeout", f"The {server} did not answer within {timeout:g} s.")
    if isinstance(exc, openai.APIConnectionError):
        return CallFailure("connection", f"Could not reach the {server}: {exc.__cause__ or exc}")
    if not isinstance(exc, openai.APIStatusError):
        return CallFailure("unexpected", f"Unexpected answer from the {server}: {exc}")
    status = exc.status_code
    detail = _error_detail(exc)
    if status == 429 and "insufficient_quota" in (exc.code, exc.type):
        kind = "quota"
    elif status == 429:
        kind = "rate_limited"
    elif status >= 500 or status in (408, 409):
        kind = "server"
    elif status in (401, 403):
        kind = "auth"
    elif status == 404:
        kind = "not_found"
    elif status in (400, 413, 422):
        kind = "bad_request"
    else:
        kind = "unexpected"
    retry_after = retry_after_seconds(exc.response.headers) if kind in TRANSIENT_KINDS else None
    return CallFailure(kind, detail, status, retry_after, exc.param or "")


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return exc.message


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's), or `Retry-After` as seconds or an HTTP
    date. None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = -1.0
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return value if math.isfinite(value) and value >= 0 else None


def retry_wait(
    attempt: int,
    *,
    retry_after: float | None,
    max_wait: float,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (from 1) before the next one.

    The server's `retry_after` when it sent one (with a little jitter as a floor, so workers
    told the same wait do not all come back at once), or None when it asks for longer than
    `max_wait`: the caller should not block that long (hand the work back, or give up).
    Otherwise exponential backoff with full jitter, capped at 30 s and at `max_wait`."""
    if retry_after is not None:
        if retry_after > max_wait:
            return None
        return max(retry_after, rng() * BACKOFF_BASE_SECONDS)
    ceiling = BACKOFF_BASE_SECONDS * BACKOFF_FACTOR ** (attempt - 1)
    return rng() * min(ceiling, BACKOFF_CAP_SECONDS, max_wait)
