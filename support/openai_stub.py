"""A local, OpenAI-compatible stub HTTP server for tests and benchmarks.

Standard library only (no pytest import), so both pytest fixtures and the scripts under
``bench/`` can use it::

    from support.openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        client = OpenAI(api_key=stub.api_key, base_url=stub.base_url, max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["hello"])

Endpoints (all under ``/v1``, all require ``Authorization: Bearer <any non-empty key>``):

* ``POST /v1/embeddings`` -- deterministic embeddings (see :func:`stub_embedding`), in the real
  response shape, as JSON floats or base64 little-endian float32 (the ``openai`` client asks for
  base64 unless ``encoding_format`` is given). Real limits enforced: 2048 inputs per request,
  8192 tokens per input, 300,000 tokens per request (HTTP 400 ``invalid_request_error``).
* ``POST /v1/chat/completions`` -- deterministic reply, optionally streamed as Server-Sent
  Events in the real chunk format (``stream_options.include_usage`` honoured).
* ``POST /v1/rerank`` -- the Cohere/Jina/vLLM rerank shape: ``{"model", "query", "documents",
  "top_n"}`` → ``{"results": [{"index", "relevance_score"}]}``, best first, scored by
  :func:`stub_rerank_score` (the share of the query's words and word pairs in the document).
* ``GET /v1/models`` and ``GET /v1/models/{id}``.

Tokens are *estimated*, not tokenised: ``ceil(len(text.encode("utf-8")) / 4)``, minimum 1, and a
token-array input counts one token per element. :meth:`OpenAIStub.count_tokens` exposes the
estimator so callers can compute the same numbers; ``stub.token_counter`` may be replaced (e.g.
with a tiktoken-based function) to change what the stub counts.

Every request is recorded in ``stub.requests``; failures, latency, hangs, poisoned inputs and
RPM/TPM rate limits can be injected. All mutation of shared state happens under one lock.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import http.server
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

__all__ = [
    "API_KEY",
    "DEFAULT_DIMENSIONS",
    "OpenAIStub",
    "stub_embedding",
    "stub_rerank_score",
    "count_tokens",
]

API_KEY = "test-key"
DEFAULT_DIMENSIONS = 1536
MAX_DIMENSIONS = 3072

MAX_INPUTS_PER_REQUEST = 2048
MAX_RERANK_DOCUMENTS = 1000  # Cohere's limit per rerank request
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000

MODELS = (
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "gpt-4o-mini",
    "gpt-4o",
)

# Request headers copied into each ``stub.requests`` record (lower-case names).
RECORDED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "user-agent",
    "idempotency-key",
    "openai-organization",
    "openai-project",
    "x-stainless-retry-count",
    "x-stainless-read-timeout",
)

_WORD_RE = re.compile(r"\w+")
_PIECE_RE = re.compile(r"\s*\S+\s*|\s+")
_HASHES_PER_WORD = 4
_NOISE_SLOTS = 8
_NOISE_WEIGHT = 0.15  # norm of the per-text component relative to the word component


# --------------------------------------------------------------------------------------------
# Deterministic helpers (usable without a running server)
# --------------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """The stub's token estimate: ``ceil(utf-8 bytes / 4)``, never less than 1."""
    return max(1, -(-len(text.encode("utf-8")) // 4))


# ASCII bytes that are not \w ([A-Za-z0-9_]) become spaces, so splitting finds the same words
# as the \w+ regex, about 10 times faster (the benchmark sends megabytes of ASCII text).
_ASCII_NON_WORD = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else ord(" ") for c in range(256)
)


# Words are hashed by a polynomial hash of their bytes over the whole request at once (numpy,
# no Python per word), mixed by splitmix64 into 4 signed slots.
_HASH_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_HASH_BASE_INVERSE = pow(_HASH_BASE, -1, 2**64)


class _Powers:
    """Powers of the hash base and of its inverse modulo 2**64, grown as texts get longer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.up = self.down = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if len(self.up) <= n:
                size = max(n + 1, 2 * len(self.up))
                self.up, self.down = (
                    np.full(size, base, dtype=np.uint64)
                    for base in (_HASH_BASE, _HASH_BASE_INVERSE)
                )
                for powers in (self.up, self.down):
                    powers[0] = 1
                    np.multiply.accumulate(powers, out=powers)
            return self.up, self.down


_powers = _Powers()
_OWNER_BITS = 12  # texts per computation: at most 4,096


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _word_hashes(buffer: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The start offsets and 52-bit hashes of the space-separated words in `buffer`."""
    data = np.frombuffer(buffer, dtype=np.uint8)
    in_word = np.zeros(len(data) + 2, dtype=np.int8)
    np.not_equal(data, ord(" "), out=in_word[1:-1], casting="unsafe")
    edges = np.diff(in_word)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    up, down = _powers.upto(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    terms = data.astype(np.uint64)
    terms += np.uint64(1)
    with np.errstate(over="ignore"):
        terms *= up[: len(data)]
        np.cumsum(terms, out=prefix[1:])
        hashes = (prefix[ends] - prefix[starts]) * down[starts]
    return starts, hashes >> np.uint64(_OWNER_BITS)


def _word_text(text: str | list[int]) -> bytes:
    """Lower-cased `\\w+` words of `text` (or the pseudo-words of a token array), UTF-8,
    separated by spaces."""
    if not isinstance(text, str):
        return b" ".join(f"\x00tok{int(t)}".encode() for t in text)
    if text.isascii():
        return text.encode("ascii").lower().translate(_ASCII_NON_WORD)
    return " ".join(_WORD_RE.findall(text.lower())).encode("utf-8")


def _seed(text: str | list[int]) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8")
    return b"tokens:" + ",".join(str(int(t)) for t in text).encode()


def _embedding_arrays(texts: list[str | list[int]], dimensions: int) -> list[np.ndarray]:
    """The stub's float32 vectors of `texts`, computed together; each depends only on its own
    text and `dimensions`."""
    n = len(texts)
    if n > 2**_OWNER_BITS:
        step = 2**_OWNER_BITS
        return [
            v for i in range(0, n, step) for v in _embedding_arrays(texts[i : i + step], dimensions)
        ]
    pieces = [_word_text(text) for text in texts]
    offsets = np.cumsum([0] + [len(piece) + 1 for piece in pieces])[:-1]
    starts, hashes = _word_hashes(b" ".join(pieces))
    owners = np.searchsorted(offsets, starts, side="right") - 1
    # Distinct (text, word) pairs and how often each occurs, from one sort of both in a key.
    keys = np.sort(owners.astype(np.uint64) << np.uint64(64 - _OWNER_BITS) | hashes)
    new_pair = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=new_pair[1:])
    first = np.flatnonzero(new_pair)
    counts = np.diff(np.append(first, len(keys)))
    keys = keys[first]
    owners = (keys >> np.uint64(64 - _OWNER_BITS)).astype(np.intp)
    hashes = keys & np.uint64(2 ** (64 - _OWNER_BITS) - 1)
    # Sublinear term frequency, added to 4 slots per word (31 bits pick the slot, 1 the sign).
    weights = 1.0 + np.log(counts)
    with np.errstate(over="ignore"):
        mixed = np.stack([_splitmix64(hashes), _splitmix64(hashes ^ np.uint64(0x5BD1E995))], 1)
    chunks = np.concatenate([mixed & np.uint64(0xFFFFFFFF), mixed >> np.uint64(32)], axis=1)
    slots = owners[:, None] * dimensions + (chunks >> np.uint64(1)) % np.uint64(dimensions)
    signs = np.where(chunks & np.uint64(1), 1.0, -1.0)
    vectors = np.bincount(
        slots.astype(np.intp).ravel(),
        weights=(signs * weights[:, None]).ravel(),
        minlength=n * dimensions,
    ).reshape(n, dimensions)
    squares = _HASHES_PER_WORD * np.bincount(owners, weights=weights * weights, minlength=n)
    # A small text-specific component: different texts never share a vector exactly, and a text
    # without any word characters still gets a well-defined non-zero vector.
    digests = b"".join(hashlib.sha256(_seed(text)).digest() for text in texts)
    noise_chunks = np.frombuffer(digests, dtype="<u4").reshape(n, _NOISE_SLOTS).astype(np.intp)
    noise = np.where(squares > 0, _NOISE_WEIGHT * np.sqrt(squares), 1.0) / math.sqrt(_NOISE_SLOTS)
    np.add.at(
        vectors,
        (np.arange(n).repeat(_NOISE_SLOTS), ((noise_chunks >> 1) % dimensions).ravel()),
        (np.where(noise_chunks & 1, 1.0, -1.0) * noise[:, None]).ravel(),
    )
    norms = np.array([math.sqrt(float(np.dot(vec, vec))) for vec in vectors])
    for i in np.flatnonzero(norms == 0.0):  # pathological cancellation: a unit basis vector
        vectors[i] = 0.0
        vectors[i, noise_chunks[i, 0] % dimensions] = 1.0
        norms[i] = 1.0
    # float32, so JSON floats and base64 float32 decode to identical lists.
    return list((vectors / norms[:, None]).astype(np.float32))


def stub_embedding(text: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The vector the stub returns for ``text`` (a string or a token array) at ``dimensions``.

    Lower-cased ``\\w+`` words are feature-hashed (a 52-bit polynomial hash of the word's bytes,
    mixed by splitmix64 into 4 signed slots, sublinear term frequency) into the vector, plus a
    small component seeded by sha256 of the whole text; the result is L2-normalised and rounded
    to float32. Texts sharing words therefore have a higher cosine similarity than unrelated
    texts, and the result depends only on ``(text, dimensions)``, not on the other inputs of
    its request.
    """
    return _embedding_arrays([text], dimensions)[0].tolist()


def stub_rerank_score(query: str, document: str) -> float:
    """The relevance the stub's ``/v1/rerank`` gives ``document`` for ``query``: the share of the
    query's terms -- its lower-cased ``\\w+`` words and pairs of adjacent words -- that the
    document holds too, from 0 to 1, rounded to 6 places. A CJK run without spaces is one word."""

    def terms(text: str) -> set[Any]:
        words = _WORD_RE.findall(text.lower())
        return set(words) | set(zip(words, words[1:], strict=False))

    wanted = terms(query)
    if not wanted:
        return 0.0
    return round(len(wanted & terms(document)) / len(wanted), 6)


def _fmt_seconds(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # SSE events, sent with chunked transfer-encoding


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Reply:
    reply = _Reply(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    reply.headers["Content-Type"] = "application/json"
    reply.headers.update(headers or {})
    return reply


def _error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> _Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _json_reply(status, body, headers)


def _retry_headers(retry_after: float) -> dict[str, str]:
    return {
        "Retry-After": _fmt_seconds(retry_after),
        "retry-after-ms": str(max(1, math.ceil(retry_after * 1000))),
    }


@dataclass
class _Failure:
    status: int
    retry_after: float | None = None
    code: str | None = None
    body: Any = None
    headers: dict[str, str] | None = None

    def reply(self) -> _Reply:
        headers = dict(self.headers or {})
        if self.retry_after is not None:
            headers.update(_retry_headers(self.retry_after))
        if self.body is not None:
            if isinstance(self.body, bytes | str):
                raw = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
                reply = _Reply(self.status, raw, {"Content-Type": "application/json"})
                reply.headers.update(headers)
                return reply
            return _json_reply(self.status, self.body, headers)
        status, code = self.status, self.code
        if code == "insufficient_quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            return _error(status, message, "insufficient_quota", None, code, headers)
        if status == 429:
            message = "Rate limit reached (injected by OpenAIStub.fail_next). Please try again."
            return _error(status, message, "requests", None, code or "rate_limit_exceeded", headers)
        if status == 503:
            message = "The engine is currently overloaded, please try again later."
            return _error(status, message, "server_error", None, code, headers)
        if status >= 500:
            message = "The server had an error while processing your request. Sorry about that!"
            return _error(status, message, "server_error", None, code, headers)
        message = f"Injected failure (HTTP {status}) from OpenAIStub.fail_next."
        return _error(status, message, "invalid_request_error", None, code, headers)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: OpenAIStub


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenAIStub/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.stub._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self.server.stub._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# --------------------------------------------------------------------------------------------
# The stub
# --------------------------------------------------------------------------------------------


class OpenAIStub:
    """An OpenAI-compatible HTTP server on ``127.0.0.1`` (ephemeral port by default).

    Use ``start()``/``stop()`` or ``with OpenAIStub() as stub:``. Configuration attributes (all
    may be changed while running; ``reset()`` restores the constructor's values):

    ``latency``            seconds added to every request
    ``rpm`` / ``tpm``      requests / tokens per ``rate_window`` seconds (default 60); ``None`` = off
    ``poison``             set of texts; an embeddings request containing one answers 400
    ``chat_reply``         ``None`` (default ``"Stub answer to: <last user message[:200]>"``), a
                           string (``""`` for empty content) or ``callable(request_json) -> str``
    ``stream_delay``       seconds slept between streamed chat chunks
    ``default_dimensions`` embedding size when ``dimensions`` is absent (1536)
    ``max_dimensions``     largest accepted ``dimensions`` (3072)
    ``max_inputs`` / ``max_input_tokens`` / ``max_request_tokens``  the embeddings limits
    ``token_counter``      the estimator used for all counting (default :meth:`count_tokens`)

    Recordings: ``requests`` (list of dicts: ``method``, ``path``, ``json``, ``headers``,
    ``status``, ``time``, ``duration``), ``embedding_requests`` (embeddings calls received,
    whatever their outcome), ``embedded_inputs`` (inputs in successful embeddings responses),
    ``chat_requests`` (chat completion calls received), ``rerank_requests`` (rerank calls
    received), ``limit_violations`` (429s produced by the rpm/tpm limits -- not injected ones).
    """

    api_key = API_KEY
    count_tokens = staticmethod(count_tokens)
    embedding_for = staticmethod(stub_embedding)

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        tpm: int | None = None,
        rate_window: float = 60.0,
        default_dimensions: int = DEFAULT_DIMENSIONS,
        max_dimensions: int = MAX_DIMENSIONS,
        max_inputs: int = MAX_INPUTS_PER_REQUEST,
        max_input_tokens: int = MAX_TOKENS_PER_INPUT,
        max_request_tokens: int = MAX_TOKENS_PER_REQUEST,
        stream_delay: float = 0.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._defaults = {
            "latency": latency,
            "rpm": rpm,
            "tpm": tpm,
            "rate_window": rate_window,
            "default_dimensions": default_dimensions,
            "max_dimensions": max_dimensions,
            "max_inputs": max_inputs,
            "max_input_tokens": max_input_tokens,
            "max_request_tokens": max_request_tokens,
            "stream_delay": stream_delay,
        }
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._seq = 0
        self.reset()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> OpenAIStub:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"openai-stub:{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes hanging / sleeping handlers
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("OpenAIStub is not running; call start() first")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"<OpenAIStub {where}>"

    # -- control --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear recordings, queued failures/hangs and rate-limit windows; restore settings."""
        with self._lock:
            for name, value in self._defaults.items():
                setattr(self, name, value)
            self.poison: set[str] = set()
            self.chat_reply: str | Callable[[dict[str, Any]], str] | None = None
            self.token_counter: Callable[[str], int] = count_tokens
            self.requests: list[dict[str, Any]] = []
            self.embedding_requests = 0
            self.embedded_inputs = 0
            self.chat_requests = 0
            self.rerank_requests = 0
            self.limit_violations = 0
            self._failures: collections.deque[_Failure] = collections.deque()
            self._hangs: collections.deque[float] = collections.deque()
            self._window: collections.deque[tuple[float, int]] = collections.deque()
            self._window_tokens = 0

    def fail_next(
        self,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        code: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests (any endpoint) with HTTP ``status``.

        ``retry_after`` (seconds) sets ``Retry-After`` and ``retry-after-ms``; ``code`` sets the
        error code (429 defaults to ``rate_limit_exceeded``; ``"insufficient_quota"`` produces the
        real quota error); ``body`` replaces the whole JSON body (dict, or raw str/bytes).
        """
        if status < 400:
            raise ValueError("fail_next needs an error status (>= 400)")
        with self._lock:
            for _ in range(count):
                self._failures.append(_Failure(status, retry_after, code, body, headers))

    def answer_next(self, body: Any, count: int = 1) -> None:
        """Answer the next ``count`` requests with HTTP 200 and ``body`` (a dict, or raw str or
        bytes): a server that says something other than what was asked."""
        with self._lock:
            for _ in range(count):
                self._failures.append(_Failure(200, body=body))

    def hang_next(self, seconds: float, count: int = 1) -> None:
        """Delay the next ``count`` requests by ``seconds`` before handling them normally."""
        with self._lock:
            self._hangs.extend([float(seconds)] * count)

    def hangs_cancel(self) -> None:
        """Drop the delays no request has taken yet (those under way run to their end)."""
        with self._lock:
            self._hangs.clear()

    @property
    def pending_hangs(self) -> int:
        """Delays not yet taken by a request (0: every queued delay is under way or over)."""
        with self._lock:
            return len(self._hangs)

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    # -- recordings -----------------------------------------------------------------------------

    def requests_for(self, path_suffix: str) -> list[dict[str, Any]]:
        """Recorded requests whose path ends with ``path_suffix`` (e.g. ``"/embeddings"``)."""
        with self._lock:
            return [r for r in self.requests if r["path"].endswith(path_suffix)]

    @property
    def last_request(self) -> dict[str, Any] | None:
        with self._lock:
            return self.requests[-1] if self.requests else None

    @property
    def chat_messages(self) -> list[list[dict[str, Any]]]:
        """The ``messages`` of every recorded chat completion request, in order."""
        return [
            (r["json"] or {}).get("messages") or []
            for r in self.requests_for("/chat/completions")
            if isinstance(r["json"], dict)
        ]

    @property
    def embedding_inputs(self) -> list[Any]:
        """The ``input`` of every recorded embeddings request, in order."""
        return [
            r["json"].get("input")
            for r in self.requests_for("/embeddings")
            if isinstance(r["json"], dict)
        ]

    # -- request handling -----------------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _sleep(self, seconds: float) -> None:
        if seconds and seconds > 0:
            self._stopping.wait(seconds)

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(parts)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _handle(self, h: _Handler) -> None:
        started = time.time()
        path = urlsplit(h.path).path.rstrip("/") or "/"
        try:
            raw = self._read_body(h)
        except (OSError, ValueError):
            h.close_connection = True
            return
        payload: Any = None
        bad_json = False
        if raw:
            try:
                payload = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                bad_json = True
        record: dict[str, Any] = {
            "method": h.command,
            "path": path,
            "json": payload,
            "headers": {k: h.headers[k] for k in RECORDED_HEADERS if k in h.headers},
            "status": None,
            "time": started,
            "duration": None,
        }
        with self._lock:
            self._seq += 1
            seq = self._seq
            self.requests.append(record)
            if h.command == "POST" and path == "/v1/embeddings":
                self.embedding_requests += 1
            elif h.command == "POST" and path == "/v1/chat/completions":
                self.chat_requests += 1
            elif h.command == "POST" and path == "/v1/rerank":
                self.rerank_requests += 1
        try:
            reply = self._dispatch(h, path, payload, bad_json)
        except Exception as exc:  # a bug in the stub or in a chat_reply callable
            reply = _error(500, f"OpenAIStub internal error: {exc!r}", "server_error")
        reply.headers.setdefault("x-request-id", f"req_stub_{seq}")
        reply.headers.setdefault("openai-processing-ms", str(int((time.time() - started) * 1000)))
        record["status"] = reply.status
        try:
            self._send(h, reply)
        except OSError:  # client went away (timeouts, stop())
            h.close_connection = True
        record["duration"] = time.time() - started

    def _send(self, h: _Handler, reply: _Reply) -> None:
        h.send_response(reply.status)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if reply.stream is None:
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            h.wfile.write(reply.body)
            h.wfile.flush()
            return
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        for i, event in enumerate(reply.stream):
            if i and self.stream_delay:
                self._sleep(self.stream_delay)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _dispatch(self, h: _Handler, path: str, payload: Any, bad_json: bool) -> _Reply:
        with self._lock:
            hang = self._hangs.popleft() if self._hangs else 0.0
        self._sleep(hang)
        self._sleep(self.latency)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return failure.reply()

        if path.startswith("/_stub/"):
            return self._control(h.command, path, payload)
        auth = h.headers.get("Authorization") or ""
        scheme, _, key = auth.partition(" ")
        if not auth:
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")

        method = h.command
        if method == "POST" and path in ("/v1/embeddings", "/v1/chat/completions", "/v1/rerank"):
            if bad_json or not isinstance(payload, dict):
                return _error(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                    "payload, but what was sent was not valid JSON.)",
                )
            if path == "/v1/embeddings":
                return self._embeddings(payload)
            if path == "/v1/rerank":
                return self._rerank(payload)
            return self._chat(payload)
        if method == "GET" and path == "/v1/models":
            return _json_reply(200, {"object": "list", "data": [self._model(m) for m in MODELS]})
        if method == "GET" and path.startswith("/v1/models/"):
            model = path.removeprefix("/v1/models/")
            if model in MODELS:
                return _json_reply(200, self._model(model))
            return _error(
                404, f"The model '{model}' does not exist", param="model", code="model_not_found"
            )
        return _error(404, f"Invalid URL ({method} {path})")

    # Settings a controlling process may change through POST /_stub/config.
    _CONFIGURABLE = ("latency", "rpm", "tpm", "rate_window", "stream_delay")

    def _control(self, method: str, path: str, payload: Any) -> _Reply:
        """For a stub running in its own process (benchmarks): read counters, change settings."""
        if method == "GET" and path == "/_stub/stats":
            with self._lock:
                accepted = [
                    # An input is a text or, as LangChain's OpenAIEmbeddings sends, token ids.
                    [
                        r["time"],
                        sum(
                            count_tokens(t) if isinstance(t, str) else len(t)
                            for t in r["json"]["input"]
                        ),
                    ]
                    for r in self.requests
                    if r["path"].endswith("/embeddings")
                    and r.get("status") == 200
                    and isinstance(r.get("json"), dict)
                    and isinstance(r["json"].get("input"), list)
                ]
            return _json_reply(
                200,
                {
                    "embedding_requests": self.embedding_requests,
                    "embedded_inputs": self.embedded_inputs,
                    "limit_violations": self.limit_violations,
                    "accepted": accepted,
                },
            )
        if method == "POST" and path == "/_stub/config" and isinstance(payload, dict):
            if payload.get("reset"):
                self.reset()
            for name in self._CONFIGURABLE:
                if name in payload:
                    setattr(self, name, payload[name])
            return _json_reply(200, {"ok": True})
        return _error(404, f"Invalid control URL ({method} {path})")

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "system"}

    def _rate_headers(self) -> dict[str, str]:
        headers = {}
        if self.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, self.rpm - len(self._window)))
        if self.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm - self._window_tokens))
        return headers

    def _admit(self, tokens: int, model: str) -> _Reply | dict[str, str]:
        """Apply the rpm/tpm sliding window. Returns a 429 reply, or headers for the success."""
        with self._lock:
            rpm, tpm, window = self.rpm, self.tpm, self.rate_window
            if rpm is None and tpm is None:
                return {}
            now = time.monotonic()
            while self._window and self._window[0][0] <= now - window:
                self._window_tokens -= self._window.popleft()[1]
            retry: float | None = None
            kind = message = ""
            if rpm is not None and len(self._window) >= rpm:
                retry = self._window[len(self._window) - rpm][0] + window - now
                kind = "requests"
                message = (
                    f"Rate limit reached for {model} on requests per min (RPM): Limit {rpm}, "
                    f"Used {len(self._window)}, Requested 1."
                )
            elif tpm is not None and tokens > tpm:
                retry = window
                kind = "tokens"
                message = (
                    f"Request too large for {model} on tokens per min (TPM): Limit {tpm}, "
                    f"Requested {tokens}."
                )
            elif tpm is not None and self._window_tokens + tokens > tpm:
                used = self._window_tokens
                for stamp, spent in self._window:
                    used -= spent
                    if used + tokens <= tpm:
                        retry = stamp + window - now
                        break
                kind = "tokens"
                message = (
                    f"Rate limit reached for {model} on tokens per min (TPM): Limit {tpm}, "
                    f"Used {self._window_tokens}, Requested {tokens}."
                )
            if retry is not None:
                self.limit_violations += 1
                retry = max(retry, 0.001)
                message += f" Please try again in {_fmt_seconds(retry)}s."
                headers = _retry_headers(retry) | self._rate_headers()
                return _error(429, message, kind, None, "rate_limit_exceeded", headers)
            self._window.append((now, tokens))
            self._window_tokens += tokens
            return self._rate_headers()

    # -- embeddings -----------------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> _Reply:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", param="model")

        raw_input = body.get("input")
        invalid = "'$.input' is invalid. Please check the API reference."
        inputs: list[str | list[int]]
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            if all(isinstance(x, str) for x in raw_input):
                inputs = list(raw_input)
            elif all(isinstance(x, int) and not isinstance(x, bool) for x in raw_input):
                inputs = [raw_input]
            elif all(
                isinstance(x, list)
                and x
                and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
                for x in raw_input
            ):
                inputs = list(raw_input)
            else:
                return _error(400, invalid, param="input")
        else:
            return _error(400, invalid, param="input")

        encoding_format = body.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            return _error(
                400,
                f"'{encoding_format}' is not one of ['float', 'base64'] - 'encoding_format'",
                param="encoding_format",
            )
        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = self.default_dimensions
        elif (
            not isinstance(dimensions, int)
            or isinstance(dimensions, bool)
            or not 1 <= dimensions <= self.max_dimensions
        ):
            return _error(
                400,
                f"Invalid value for 'dimensions' = {dimensions!r}. Must be an integer between 1 "
                f"and {self.max_dimensions}.",
                param="dimensions",
            )

        if len(inputs) > self.max_inputs:
            return _error(
                400,
                f"'$.input' is invalid: too many inputs ({len(inputs)}); the maximum is "
                f"{self.max_inputs} inputs per request.",
                param="input",
            )
        counter = self.token_counter
        token_counts = []
        for i, item in enumerate(inputs):
            if item == "":
                return _error(400, f"'$.input[{i}]' is invalid: empty string.", param=f"input[{i}]")
            n = counter(item) if isinstance(item, str) else len(item)
            if n > self.max_input_tokens:
                return _error(
                    400,
                    f"This model's maximum context length is {self.max_input_tokens} tokens, "
                    f"however you requested {n} tokens ({n} in your prompt; 0 for the "
                    f"completion) in input[{i}]. Please reduce your prompt; or completion length.",
                    param=f"input[{i}]",
                    code="context_length_exceeded",
                )
            token_counts.append(n)
        total = sum(token_counts)
        if total > self.max_request_tokens:
            return _error(
                400,
                f"Requested {total} tokens, max {self.max_request_tokens} tokens per request",
                param="input",
                code="max_tokens_per_request",
            )
        poison = frozenset(self.poison)
        if poison:
            for i, item in enumerate(inputs):
                if isinstance(item, str) and item in poison:
                    return _error(
                        400,
                        f"Invalid input at index {i}: the stub was told to reject this text.",
                        param=f"input[{i}]",
                        code="invalid_input",
                    )

        admitted = self._admit(total, model)
        if isinstance(admitted, _Reply):
            return admitted

        data = []
        for i, packed in enumerate(_embedding_arrays(inputs, dimensions)):
            if encoding_format == "base64":
                embedding: Any = base64.b64encode(packed.astype("<f4").tobytes()).decode("ascii")
            else:
                embedding = packed.tolist()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        with self._lock:
            self.embedded_inputs += len(inputs)
        response = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
        return _json_reply(200, response, admitted)

    # -- rerank ---------------------------------------------------------------------------------

    def _rerank(self, body: dict[str, Any]) -> _Reply:
        model = body.get("model", "stub-rerank")
        if not isinstance(model, str) or not model:
            return _error(400, "'model' must be a non-empty string.", param="model")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            return _error(400, "'query' must be a non-empty string.", param="query")
        raw_documents = body.get("documents")
        if not isinstance(raw_documents, list) or not raw_documents:
            return _error(400, "'documents' must be a non-empty array.", param="documents")
        if len(raw_documents) > MAX_RERANK_DOCUMENTS:
            return _error(
                400,
                f"Too many documents ({len(raw_documents)}); the maximum is "
                f"{MAX_RERANK_DOCUMENTS} per request.",
                param="documents",
            )
        documents = []
        for i, document in enumerate(raw_documents):
            if isinstance(document, dict):  # Cohere's older {"text": ...} form
                document = document.get("text")
            if not isinstance(document, str):
                return _error(400, f"Invalid value for 'documents[{i}]'.", param=f"documents[{i}]")
            documents.append(document)
        top_n = body.get("top_n")
        if top_n is None:
            top_n = len(documents)
        elif not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
            return _error(400, "'top_n' must be a positive integer.", param="top_n")

        counter = self.token_counter
        tokens = sum(counter(query) + (counter(d) if d else 0) for d in documents)
        admitted = self._admit(tokens, model)
        if isinstance(admitted, _Reply):
            return admitted

        scores = [stub_rerank_score(query, document) for document in documents]
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[:top_n]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if body.get("return_documents"):
                result["document"] = {"text": documents[i]}
            results.append(result)
        with self._lock:
            rerank_id = f"rerank-stub{self._seq:08d}"
        response = {
            "id": rerank_id,
            "model": model,
            "results": results,
            "usage": {"total_tokens": tokens},
        }
        return _json_reply(200, response, admitted)

    # -- chat -----------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> _Reply:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return _error(400, f"Invalid value for 'messages[{i}]'.", param=f"messages[{i}]")
        counter = self.token_counter
        prompt_tokens = sum(
            counter(text) for m in messages if (text := _content_text(m.get("content")))
        )

        admitted = self._admit(prompt_tokens, model)
        if isinstance(admitted, _Reply):
            return admitted

        reply = self.chat_reply
        if reply is None:
            user = [m for m in messages if m.get("role") == "user"]
            last = _content_text(user[-1].get("content")) if user else ""
            content = f"Stub answer to: {last[:200]}"
        elif callable(reply):
            content = reply(body)
            content = "" if content is None else str(content)
        else:
            content = str(reply)

        finish_reason = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and content:
            if counter(content) > limit:
                encoded = content.encode("utf-8")[: limit * 4]
                content = encoded.decode("utf-8", errors="ignore")
                finish_reason = "length"
        completion_tokens = counter(content) if content else 0
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        with self._lock:
            completion_id = f"chatcmpl-stub{self._seq:08d}"
        created = int(time.time())

        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = self._chunks(
                completion_id, created, model, content, finish_reason, usage, include_usage
            )
            return _Reply(200, headers=admitted, stream=events)

        response = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_openai_stub",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
        return _json_reply(200, response, admitted)

    @staticmethod
    def _chunks(
        completion_id: str,
        created: int,
        model: str,
        content: str,
        finish_reason: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> Iterator[bytes]:
        def event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_openai_stub",
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                chunk["usage"] = None
            chunk.update(extra)
            return b"data: " + json.dumps(chunk, separators=(",", ":")).encode("utf-8") + b"\n\n"

        yield event({"role": "assistant", "content": "", "refusal": None})
        for piece in _PIECE_RE.findall(content):
            yield event({"content": piece})
        yield event({}, finish_reason)
        if include_usage:
            yield event(None, usage=usage)
        yield b"data: [DONE]\n\n"


def main() -> None:
    """Run the stub in its own process: `python -m support.openai_stub --latency 0.1`. Prints the
    base URL, then serves until killed (benchmarks keep its CPU out of the measured process)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    stub = OpenAIStub(port=args.port, latency=args.latency).start()
    print(stub.base_url, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    stub.stop()


if __name__ == "__main__":
    main()
