"""Embedding one planned batch: retries of transient failures, isolation of rejected inputs."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings

from knowledge.embed.base import (
    EmbeddingProvider,
    InputRejectedError,
    ProviderConfigError,
    RetryLaterError,
    TransientProviderError,
)
from knowledge.embed.pacing import get_request_pacer
from knowledge.openai_calls import retry_wait
from knowledge.tokens import get_token_counter


@dataclass
class EmbedOutcome:
    vectors: list[Sequence[float] | None]  # None where the input was rejected
    errors: dict[int, str]  # index → message, for rejected inputs
    requests: int = 0  # API requests made, including retries and bisection
    retries: int = 0


def provider_vectors(provider: EmbeddingProvider, texts: list[str]) -> Sequence[Sequence[float]]:
    """One request's vectors, as float32 arrays when the provider can give them (the pipeline
    writes them to the database as they are), else as float lists."""
    fast = getattr(provider, "embed_float32", None)
    return fast(texts) if fast is not None else provider.embed(texts)


def embed_with_retries(
    provider: EmbeddingProvider,
    texts: list[str],
    *,
    token_counts: Sequence[int] | None = None,
    max_attempts: int = 5,
    max_wait: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> EmbedOutcome:
    """Embed one planned batch, riding out transient failures and isolating rejected inputs.

    - `TransientProviderError`: retried up to `max_attempts` requests in all, after the
      server's `retry_after` when given, else exponential backoff with full jitter (0.5 s × 2ⁿ,
      capped at 30 s and at `max_wait`). A `retry_after` above `max_wait` (default
      `KIOKU_EMBEDDING_MAX_RETRY_WAIT_SECONDS`) raises `RetryLaterError` at once; running out of
      attempts re-raises the last error.
    - `QuotaExceededError`, `ProviderConfigError`: raised at once.
    - `InputRejectedError`: a bad input never blocks its neighbours. The input the server names
      is recorded in `errors` and the rest re-sent; if none is named the batch is split in
      halves until each bad input stands alone.
    - Every vector must have `provider.dimensions` elements, else `ProviderConfigError`.

    `token_counts` (the caller's counts of `texts`, if it has them) spare the RPM/TPM pacer
    counting again.

    Anything embedded before an exception is raised is lost to the caller: the batch is one unit.
    """
    if max_wait is None:
        max_wait = float(settings.KIOKU_EMBEDDING_MAX_RETRY_WAIT_SECONDS)
    outcome = EmbedOutcome(vectors=[None] * len(texts), errors={})
    pending = [list(range(len(texts)))] if texts else []
    while pending:
        group = pending.pop()
        try:
            vectors = _embed_request(
                provider,
                [texts[i] for i in group],
                outcome,
                token_counts=None if token_counts is None else [token_counts[i] for i in group],
                max_attempts=max_attempts,
                max_wait=max_wait,
                sleep=sleep,
                rng=rng,
            )
        except InputRejectedError as exc:
            pending.extend(_rejected_isolate(group, exc, outcome.errors))
            continue
        for index, vector in zip(group, vectors, strict=True):
            _dimensions_check(provider, vector)
            outcome.vectors[index] = vector
    return outcome


def _rejected_isolate(
    group: list[int], exc: InputRejectedError, errors: dict[int, str]
) -> list[list[int]]:
    """After a rejected request: the input the server names (or the only one) goes to `errors`;
    returns the groups to send again (the rest, or both halves when none is named), in the
    order they are pushed on the stack."""
    if len(group) == 1:
        errors[group[0]] = exc.message
        return []
    if exc.index is not None and 0 <= exc.index < len(group):
        errors[group[exc.index]] = exc.message
        return [group[: exc.index] + group[exc.index + 1 :]]
    half = len(group) // 2
    return [group[half:], group[:half]]  # the first half is popped first: inputs settle in order


def _dimensions_check(provider: EmbeddingProvider, vector: Sequence[float]) -> None:
    if len(vector) != provider.dimensions:
        raise ProviderConfigError(
            f"{provider.name} model {provider.model!r} returned {len(vector)}-dimensional "
            f"vectors, but KIOKU_EMBEDDING_DIMENSIONS is {provider.dimensions}: configure "
            "the size the model produces (the vector column must match) or another model."
        )


def _embed_request(
    provider: EmbeddingProvider,
    texts: list[str],
    outcome: EmbedOutcome,
    *,
    token_counts: list[int] | None,
    max_attempts: int,
    max_wait: float,
    sleep: Callable[[float], None],
    rng: Callable[[], float],
) -> Sequence[Sequence[float]]:
    """One request, repeated while it fails transiently; paced under the RPM/TPM limits."""
    attempt = 0
    pacer = get_request_pacer() if not provider.is_offline else None
    if pacer is None:
        estimated = 0
    elif token_counts is not None:
        estimated = sum(token_counts)
    else:
        estimated = sum(get_token_counter().count(text) for text in texts)
    while True:
        attempt += 1
        outcome.requests += 1
        try:
            if pacer is not None:
                event = pacer.acquire(estimated)
            vectors = provider_vectors(provider, texts)
            if pacer is not None:
                usage = getattr(provider, "last_usage_tokens", lambda: None)()
                pacer.settle(event, estimated_tokens=estimated, actual_tokens=usage)
            if len(vectors) != len(texts):
                raise TransientProviderError(
                    f"The provider returned {len(vectors)} vectors for {len(texts)} inputs."
                )
            return vectors
        except TransientProviderError as exc:
            wait = retry_wait(attempt, retry_after=exc.retry_after, max_wait=max_wait, rng=rng)
            if wait is None:
                raise RetryLaterError(
                    f"The server asked to wait {exc.retry_after:g} s, longer than a worker may "
                    f"block ({max_wait:g} s): {exc.message}",
                    retry_after=exc.retry_after,
                ) from exc
            if attempt >= max_attempts:
                raise
            sleep(wait)
            outcome.retries += 1
