"""Chat model for answers: OpenAI or any OpenAI-compatible server (`OPENAI_BASE_URL`).

`get_chat_provider()` returns None without `OPENAI_API_KEY`: answers are then extractive
(knowledge/answer/answering.py). Transient failures (429 rate limit, 5xx, timeouts, connection errors)
are retried (knowledge/openai_calls.py: backoff with jitter, or the server's Retry-After up to
`KIOKU_CHAT_MAX_RETRY_WAIT_SECONDS`), up to
`KIOKU_CHAT_MAX_ATTEMPTS` requests; a stream is retried only until its first text arrives.
Anything else, or running out of attempts, raises `ChatError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from knowledge.offline import answers_offline
from knowledge.openai_calls import call_failure, retry_wait

if TYPE_CHECKING:
    import openai


class ChatError(Exception):
    def __init__(
        self, message: str, *, is_transient: bool = False, retry_after: float | None = None
    ) -> None:
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

    def complete(
        self, messages: list[dict], *, sleep: Callable = time.sleep, attempts: int | None = None
    ) -> ChatReply:
        """One answer, retried while the failure is transient, up to `attempts` requests
        (default `KIOKU_CHAT_MAX_ATTEMPTS`; a search's reranker makes one)."""
        return _with_retries(lambda: self._complete_once(messages), sleep=sleep, attempts=attempts)

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
                wait = None if started else _wait_before_retry(attempt, exc)
                if wait is None:
                    raise
                sleep(wait)

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

    def _error_from(self, exc: openai.OpenAIError) -> ChatError:
        failure = call_failure(exc, timeout=self.timeout, server="chat server")
        return ChatError(
            failure.message, is_transient=failure.is_transient, retry_after=failure.retry_after
        )


def _wait_before_retry(
    attempt: int, exc: ChatError, *, attempts: int | None = None
) -> float | None:
    """None when the failure is final: not transient, out of attempts, or the server asks for a
    longer wait than a person waiting for the answer should sit through."""
    if attempts is None:
        attempts = settings.KIOKU_CHAT_MAX_ATTEMPTS
    if not exc.is_transient or attempt >= attempts:
        return None
    return retry_wait(
        attempt,
        retry_after=exc.retry_after,
        max_wait=float(settings.KIOKU_CHAT_MAX_RETRY_WAIT_SECONDS),
    )


def _with_retries(
    request: Callable[[], ChatReply], *, sleep: Callable, attempts: int | None
) -> ChatReply:
    attempt = 0
    while True:
        attempt += 1
        try:
            return request()
        except ChatError as exc:
            wait = _wait_before_retry(attempt, exc, attempts=attempts)
            if wait is None:
                raise
            sleep(wait)


_providers: dict[tuple, OpenAIChatProvider] = {}
_providers_lock = threading.Lock()


def get_chat_provider() -> OpenAIChatProvider | None:
    """The chat model when `OPENAI_API_KEY` is set, else None (offline: extractive answers).
    Settings are read on every call; providers are cached per configuration."""
    if answers_offline():
        return None
    return chat_provider(
        model=settings.KIOKU_CHAT_MODEL,
        timeout=float(settings.KIOKU_CHAT_TIMEOUT_SECONDS),
        max_tokens=settings.KIOKU_CHAT_MAX_TOKENS,
    )


def chat_provider(*, model: str, timeout: float, max_tokens: int) -> OpenAIChatProvider:
    """A chat provider on the configured server and key (`OPENAI_BASE_URL`, `OPENAI_API_KEY`)
    with this model, timeout and answer length: the answers' one, or the LLM reranker's."""
    key = (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL or None, model, timeout, max_tokens)
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
