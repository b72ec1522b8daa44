"""Which embedding provider to use: OpenAI when `OPENAI_API_KEY` is set, else the configured
local one (KIOKU_OFFLINE_EMBEDDING_MODEL); cached per configuration."""

from __future__ import annotations

import threading

from django.conf import settings

from knowledge.embed.base import EmbeddingLimits, EmbeddingProvider, ProviderConfigError
from knowledge.embed.local_provider import LocalHashingEmbeddingProvider
from knowledge.embed.openai_provider import OpenAIEmbeddingProvider
from knowledge.embed.use_provider import UseMultilingualEmbeddingProvider

# The offline models: no key, no network. The hashing one takes any size; the others have their
# own (`native_dimensions`). Compared on the demo evaluation set: BENCHMARKS.md.
LOCAL_MODELS = (LocalHashingEmbeddingProvider.model, UseMultilingualEmbeddingProvider.model)


def is_local_model(model: str) -> bool:
    """Whether vectors of `model` come from a local, offline provider."""
    return model in LOCAL_MODELS


def local_model_dimensions(model: str) -> int:
    """The vector size a local model writes: its own, or the configured one for the hashing
    provider (which can make any)."""
    if model == UseMultilingualEmbeddingProvider.model:
        return UseMultilingualEmbeddingProvider.native_dimensions
    return settings.KIOKU_EMBEDDING_DIMENSIONS


def configured_model() -> tuple[str, int]:
    """(model, dimensions) the settings ask for: the OpenAI model with `OPENAI_API_KEY`, else
    the offline model."""
    if settings.OPENAI_API_KEY:
        return settings.KIOKU_EMBEDDING_MODEL, settings.KIOKU_EMBEDDING_DIMENSIONS
    model = settings.KIOKU_OFFLINE_EMBEDDING_MODEL
    return model, local_model_dimensions(model)


_providers: dict[tuple, EmbeddingProvider] = {}
_providers_lock = threading.Lock()


def get_embedding_provider(
    *, model: str | None = None, dimensions: int | None = None
) -> EmbeddingProvider:
    """OpenAI (or the server at `OPENAI_BASE_URL`) when `OPENAI_API_KEY` is set, else the local
    provider: the configured model. With `model`/`dimensions`, the provider of that embedding
    space (search embeds queries with the space the index holds, which may differ from the
    settings until a switch completes); a local model needs no key, any other does.
    Settings are read on every call; providers (and their HTTP connection pools) are cached per
    configuration."""
    api_key = settings.OPENAI_API_KEY
    if model is None:
        model, default_dimensions = configured_model()
    elif is_local_model(model):
        default_dimensions = local_model_dimensions(model)
    else:
        default_dimensions = settings.KIOKU_EMBEDDING_DIMENSIONS
    dimensions = dimensions or default_dimensions
    if model == UseMultilingualEmbeddingProvider.model:
        if dimensions != UseMultilingualEmbeddingProvider.native_dimensions:
            raise ProviderConfigError(
                f"{model} makes {UseMultilingualEmbeddingProvider.native_dimensions}-dimension "
                f"vectors, not {dimensions}."
            )
        key: tuple = ("local", model)
    elif model == LocalHashingEmbeddingProvider.model:
        key = ("local", model, dimensions)
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
            provider = _provider_new(key)
            _providers[key] = provider
    return provider


def _provider_new(key: tuple) -> EmbeddingProvider:
    if key[0] == "local":
        if key[1] == UseMultilingualEmbeddingProvider.model:
            return UseMultilingualEmbeddingProvider()
        return LocalHashingEmbeddingProvider(dimensions=key[2])
    return OpenAIEmbeddingProvider(
        api_key=key[1],
        base_url=key[2],
        model=key[3],
        dimensions=key[4],
        timeout=key[5],
        limits=key[6],
    )
