"""Which embedding provider to use: OpenAI when `OPENAI_API_KEY` is set, else the local one;
cached per configuration."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

from knowledge.embed.base import EmbeddingLimits, EmbeddingProvider, ProviderConfigError
from knowledge.embed.local_provider import LocalHashingEmbeddingProvider
from knowledge.embed.openai_provider import OpenAIEmbeddingProvider

if TYPE_CHECKING:
    pass


_providers: dict[tuple, EmbeddingProvider] = {}
_providers_lock = threading.Lock()


def get_embedding_provider(
    *, model: str | None = None, dimensions: int | None = None
) -> EmbeddingProvider:
    """OpenAI (or the server at `OPENAI_BASE_URL`) when `OPENAI_API_KEY` is set, else the local
    provider: the configured model. With `model`/`dimensions`, the provider of that embedding
    space (search embeds queries with the space the index holds, which may differ from the
    settings until a switch completes); the local model needs no key, any other does.
    Settings are read on every call; providers (and their HTTP connection pools) are cached per
    configuration."""
    api_key = settings.OPENAI_API_KEY
    dimensions = dimensions or settings.KIOKU_EMBEDDING_DIMENSIONS
    if model is None:
        model = settings.KIOKU_EMBEDDING_MODEL if api_key else LocalHashingEmbeddingProvider.model
    if model == LocalHashingEmbeddingProvider.model:
        key: tuple = ("local", dimensions)
    elif not api_key:
        raise ProviderConfigError(
            f"The vector index holds {model} vectors, which needs OPENAI_API_KEY: set it, or "
            "switch the index to the configured model (manage.py reembed)."
        )
    else:
        limits = EmbeddingLimits(
            max_inputs=settings.KIOKU_EMBEDDING_MAX_INPUTS,
            max_input_tokens=settings.KIOKU_EMBEDDING_MAX_INPUT_TOKENS,
            max_request_tokens=settings.KIOKU_EMBEDDING_MAX_REQUEST_TOKENS,
        )
        key = (
            "openai",
            api_key,
            settings.OPENAI_BASE_URL or None,
            model,
            dimensions,
            float(settings.KIOKU_EMBEDDING_TIMEOUT_SECONDS),
            limits,
        )
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            if len(_providers) >= 16:  # settings flipped many times (tests): start over
                _providers.clear()
            if key[0] == "local":
                provider = LocalHashingEmbeddingProvider(dimensions=dimensions)
            else:
                provider = OpenAIEmbeddingProvider(
                    api_key=api_key,
                    base_url=key[2],
                    model=key[3],
                    dimensions=dimensions,
                    timeout=key[5],
                    limits=key[6],
                )
            _providers[key] = provider
    return provider
