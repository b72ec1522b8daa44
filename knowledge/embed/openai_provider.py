"""Embeddings from the OpenAI API or any server speaking it (`OPENAI_BASE_URL`)."""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import TYPE_CHECKING

import numpy as np

from knowledge.embed.base import (
    EmbeddingLimits,
    InputRejectedError,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    TransientProviderError,
)
from knowledge.openai_calls import call_failure

if TYPE_CHECKING:
    import openai


# Sizes the models return without a `dimensions` parameter. Only these models are sent
# `dimensions`, and only when the configured size differs; for any other model (an Ollama or
# vLLM model, say) the parameter is never sent and the returned length is checked instead.
NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# ada-002 predates the `dimensions` parameter and rejects it.
FIXED_DIMENSION_MODELS = {"text-embedding-ada-002"}

_INPUT_INDEX = re.compile(r"input\[(\d+)\]")


class OpenAIEmbeddingProvider:
    """Embeddings from the OpenAI API, or any server speaking it (`OPENAI_BASE_URL`).

    The client's own retries are off (`max_retries=0`): `embed_with_retries()` owns the retry
    policy. The client asks for base64 (a quarter of the JSON size); servers that answer with
    float arrays instead are handled the same way. The response is read raw and decoded by numpy
    (`embed_float32`): the client's own parsing builds a model object and a list of 1,536 Python
    floats per input, which cost more CPU than everything else the pipeline does per chunk.
    """

    name = "openai"
    is_offline = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        dimensions: int,
        timeout: float,
        limits: EmbeddingLimits,
    ) -> None:
        from openai import OpenAI  # imported here: offline installs never load it

        self.model = model
        self.dimensions = dimensions
        self.limits = limits
        self.base_url = base_url
        self.timeout = timeout
        self.client = OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
        self._usage = threading.local()
        native = NATIVE_DIMENSIONS.get(model)
        self.dimensions_param = dimensions if native is not None and dimensions != native else None

    def __repr__(self) -> str:
        where = self.base_url or "api.openai.com"
        return f"OpenAIEmbeddingProvider({self.model!r}, {self.dimensions}, {where})"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [vector.tolist() for vector in self.embed_float32(texts)]

    def embed_float32(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        if self.dimensions_param is not None and self.model in FIXED_DIMENSION_MODELS:
            raise ProviderConfigError(
                f"{self.model} always returns {NATIVE_DIMENSIONS[self.model]} dimensions; set "
                f"KIOKU_EMBEDDING_DIMENSIONS={NATIVE_DIMENSIONS[self.model]} or choose a "
                "text-embedding-3 model."
            )
        import openai

        options: dict = {"model": self.model, "input": texts}
        if self.dimensions_param is not None:
            options["dimensions"] = self.dimensions_param
        try:
            response = self.client.embeddings.with_raw_response.create(**options)
            body = response.content
        except openai.OpenAIError as exc:
            raise self._error_from(exc) from exc
        try:
            data, usage = _embedding_payload(json.loads(body))
        except (ValueError, TypeError, KeyError) as exc:
            raise ProviderError(
                f"Unexpected answer from the embedding server: {exc} ({body[:200]!r})"
            ) from exc
        self._usage.tokens = usage
        if len(data) != len(texts):
            raise TransientProviderError(
                f"The server returned {len(data)} embeddings for {len(texts)} inputs."
            )
        return data

    def last_usage_tokens(self) -> int | None:
        """Tokens the server counted for this thread's last successful request."""
        return getattr(self._usage, "tokens", None)

    def _error_from(self, exc: openai.OpenAIError) -> ProviderError:
        failure = call_failure(exc, timeout=self.timeout, server="embedding server")
        message = failure.message
        if failure.is_transient:
            return TransientProviderError(message, retry_after=failure.retry_after)
        if failure.kind == "quota":
            return QuotaExceededError(message)
        if failure.kind == "auth":
            return ProviderConfigError(f"{message} (check OPENAI_API_KEY)")
        if failure.kind == "not_found":
            return ProviderConfigError(
                f"{message} (check KIOKU_EMBEDDING_MODEL={self.model!r} and OPENAI_BASE_URL)"
            )
        if failure.kind == "bad_request":
            if failure.param and not failure.param.startswith("input"):
                # `model`, `dimensions`, `encoding_format`: no input is to blame.
                return ProviderConfigError(f"{message} (parameter {failure.param!r})")
            match = _INPUT_INDEX.search(failure.param) or _INPUT_INDEX.search(failure.detail)
            return InputRejectedError(message, index=int(match.group(1)) if match else None)
        return ProviderError(message)


def _embedding_payload(payload: dict) -> tuple[list[np.ndarray], int | None]:
    """The vectors of an embeddings response in input order, as float32 arrays (from base64
    little-endian float32 or from float lists), and its usage.prompt_tokens."""
    items = sorted(payload["data"], key=lambda item: item["index"])
    vectors = []
    for item in items:
        value = item["embedding"]
        if isinstance(value, str):
            raw = base64.b64decode(value, validate=True)
            if len(raw) % 4:
                raise ValueError(f"a base64 embedding of {len(raw)} bytes is not float32")
            vectors.append(np.frombuffer(raw, dtype="<f4"))
        elif isinstance(value, list):
            vectors.append(np.asarray(value, dtype=np.float32))
        else:
            raise TypeError(f"an embedding of type {type(value).__name__}")
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return vectors, tokens if isinstance(tokens, int) else None
