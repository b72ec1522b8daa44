"""Chat model for answers: OpenAI or any OpenAI-compatible server (`OPENAI_BASE_URL`).

`get_chat_provider()` returns None without `OPENAI_API_KEY`: answers are then extractive
(knowledge/answer/answering.py). Transient failures (429 rate limit, 5xx, timeouts, connection errors)
are retried with exponential backoff and jitter, honouring the server's Retry-After, up to
`KIOKU_CHAT_MAX_ATTEMPTS` requests; a stream is retried only until its first text arrives.
Anything else, or running out of attempts, raises `ChatError`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings

from knowledge.embed.providers import _error_detail, _retry_after

BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 20.0


class ChatError(Exception):
    def __init__(self, message: str, *, is_transient: bool = False, retry_after=None) -> None:
        super().__init__(message)
        self.message = message
        self.is_transient = is_transient
        self.retry_after = retry_after


@dataclass
class ChatUsage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class ChatReply:
    content: str
    usage: ChatUsage


class OpenAIChatProvider:
    def __init__(
        self, *, api_key: str, base_url: str | None, model: str, timeout: float, max_tokens: int
    ) -> None:
        from openai import OpenAI  # imported here: offline installs never load it

        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.client = OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    def __repr__(self) -> str:
        return f"OpenAIChatProvider({self.model!r})"

    def complete(self, messages: list[dict], *, sleep: Callable = time.sleep) -> ChatReply:
        """One answer, retried while the failure is transient."""
        return _with_retries(lambda: self._complete_once(messages), sleep=sleep)

    def stream(
        self, messages: list[dict], usage: ChatUsage, *, sleep: Callable = time.sleep
    ) -> Iterator[str]:
        """Text pieces as the model writes them; `usage` is filled in at the end."""
        attempt = 0
        while True:
            attempt += 1
            started = False
            try:
                for piece in self._stream_once(messages, usage):
                    started = True
                    yield piece
                return
            except ChatError as exc:
                if started or not exc.is_transient or attempt >= settings.KIOKU_CHAT_MAX_ATTEMPTS:
                    raise
                sleep(_backoff(attempt, exc.retry_after))

    def _options(self, messages: list[dict]) -> dict:
        return {
            "model": self.model,
            "messages": messages,
            "temperature": 0.1,
            "max_tokens": self.max_tokens,
        }

    def _complete_once(self, messages: list[dict]) -> ChatReply:
        import openai

        try:
            response = self.client.chat.completions.create(**self._options(messages))
        except openai.OpenAIError as exc:
            raise self._error_from(exc) from exc
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content if choice else None) or ""
        usage = getattr(response, "usage", None)
        return ChatReply(
            content=content,
            usage=ChatUsage(
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
            ),
        )

    def _stream_once(self, messages: list[dict], usage: ChatUsage) -> Iterator[str]:
        import openai

        try:
            stream = self.client.chat.completions.create(
                **self._options(messages), stream=True, stream_options={"include_usage": True}
            )
            for chunk in stream:
                if chunk.usage is not None:
                    usage.prompt_tokens = chunk.usage.prompt_tokens
                    usage.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
        except openai.OpenAIError as exc:
            raise self._error_from(exc) from exc

    def _error_from(self, exc) -> ChatError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return ChatError(
                f"The chat model did not answer within {self.timeout:g} s.", is_transient=True
            )
        if isinstance(exc, openai.APIConnectionError):
            return ChatError(
                f"Could not reach the chat server: {exc.__cause__ or exc}", is_transient=True
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = f"HTTP {status}: {_error_detail(exc)}"
            quota = "insufficient_quota" in (exc.code, exc.type)
            transient = (status == 429 and not quota) or status >= 500 or status in (408, 409)
            retry_after = _retry_after(exc.response.headers) if transient else None
            return ChatError(message, is_transient=transient, retry_after=retry_after)
        return ChatError(f"Unexpected answer from the chat server: {exc}")


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_SECONDS)
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
    return ceiling / 2 + random.random() * ceiling / 2


def _with_retries(request: Callable[[], ChatReply], *, sleep: Callable) -> ChatReply:
    attempt = 0
    while True:
        attempt += 1
        try:
            return request()
        except ChatError as exc:
            if not exc.is_transient or attempt >= settings.KIOKU_CHAT_MAX_ATTEMPTS:
                raise
            sleep(_backoff(attempt, exc.retry_after))


_providers: dict[tuple, OpenAIChatProvider] = {}
_providers_lock = threading.Lock()


def get_chat_provider() -> OpenAIChatProvider | None:
    """The chat model when `OPENAI_API_KEY` is set, else None (offline: extractive answers).
    Settings are read on every call; providers are cached per configuration."""
    if not settings.OPENAI_API_KEY:
        return None
    key = (
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL or None,
        settings.KIOKU_CHAT_MODEL,
        float(settings.KIOKU_CHAT_TIMEOUT_SECONDS),
        settings.KIOKU_CHAT_MAX_TOKENS,
    )
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            if len(_providers) >= 16:
                _providers.clear()
            provider = OpenAIChatProvider(
                api_key=key[0], base_url=key[1], model=key[2], timeout=key[3], max_tokens=key[4]
            )
            _providers[key] = provider
    return provider
