"""Embedding providers: OpenAI (or any OpenAI-compatible server) and a local, offline one.

`get_embedding_provider()` picks OpenAI when `OPENAI_API_KEY` is set, otherwise the local
hashing provider. A provider's `embed()` makes exactly one request and raises a
`ProviderError` subclass that says what to do next:

| error                    | cause                                        | what the caller does      |
|--------------------------|----------------------------------------------|---------------------------|
| `TransientProviderError` | 429 rate limit, 5xx, timeout, connection     | retry with backoff        |
| `QuotaExceededError`     | 429 `insufficient_quota`                     | pause the pipeline        |
| `InputRejectedError`     | 400/413/422 about the inputs                 | isolate the bad input(s)  |
| `ProviderConfigError`    | 401/403/404, bad model/dimensions parameter, | pause; a person must fix  |
|                          | vectors of the wrong size                    | the settings              |
| `RetryLaterError`        | the server asks to wait longer than allowed  | hand the rows back, later |

`embed_with_retries()` applies those rules to one planned batch. Inputs are made to fit before
they are sent: `fit_input()` truncates an over-long text by rule, `plan_batches()` groups texts
under the per-request limits, so the API's limits are never hit on purpose.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import random
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from django.conf import settings

from knowledge.tokens import get_token_counter

if TYPE_CHECKING:
    import openai

    from knowledge.tokens import TokenCounter


@dataclass(frozen=True)
class EmbeddingLimits:
    """What one embeddings request may carry. The defaults are OpenAI's."""

    max_inputs: int = 2048
    max_input_tokens: int = 8192
    max_request_tokens: int = 300_000


# --- Errors -----------------------------------------------------------------------------------


class ProviderError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientProviderError(ProviderError):
    """Rate limited (429), server error (5xx), timeout or connection failure: worth retrying.
    `retry_after` is the server's requested wait in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceededError(ProviderError):
    """429 `insufficient_quota`: the account is out of credit. Retrying will not help."""


class InputRejectedError(ProviderError):
    """The request was refused because of its inputs. `index` is the position (within the
    request) of the input the server named, if it named one."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ProviderConfigError(ProviderError):
    """Bad key, unknown model, unsupported dimensions, vectors of the wrong size: a person has to
    change the settings."""


class RetryLaterError(ProviderError):
    """The server asked for a longer wait than a worker may block (`max_wait`)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- The provider interface ---------------------------------------------------------------------


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str  # "openai" or "local"
    model: str  # recorded on every embedded row
    dimensions: int
    is_offline: bool
    limits: EmbeddingLimits

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One API request (or one local computation); vectors in input order."""
        ...

    # Optional: `embed_float32(texts) -> list[np.ndarray]`, the same vectors as float32 arrays,
    # which the embedding pipeline prefers (see `provider_vectors`).


# --- OpenAI and OpenAI-compatible servers ---------------------------------------------------------

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
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return TransientProviderError(f"The request timed out after {self.timeout:g} s.")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return TransientProviderError(f"Could not reach the embedding server: {cause}")
        if not isinstance(exc, openai.APIStatusError):
            return ProviderError(f"Unexpected answer from the embedding server: {exc}")

        status = exc.status_code
        detail = _error_detail(exc)
        message = f"HTTP {status}: {detail}"
        if status == 429:
            if "insufficient_quota" in (exc.code, exc.type):
                return QuotaExceededError(message)
            return TransientProviderError(message, retry_after=_retry_after(exc.response.headers))
        if status >= 500 or status in (408, 409):
            return TransientProviderError(message, retry_after=_retry_after(exc.response.headers))
        if status in (401, 403):
            return ProviderConfigError(f"{message} (check OPENAI_API_KEY)")
        if status == 404:
            return ProviderConfigError(
                f"{message} (check KIOKU_EMBEDDING_MODEL={self.model!r} and OPENAI_BASE_URL)"
            )
        if status in (400, 413, 422):
            param = exc.param or ""
            if param and not param.startswith("input"):
                # `model`, `dimensions`, `encoding_format`: no input is to blame.
                return ProviderConfigError(f"{message} (parameter {param!r})")
            match = _INPUT_INDEX.search(param) or _INPUT_INDEX.search(detail)
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


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return exc.message


def _retry_after(headers) -> float | None:
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


# --- The local, offline provider ----------------------------------------------------------------

# Han, kana (incl. the prolonged sound mark) and Hangul, as [first, stop) code point ranges.
# Halfwidth katakana and fullwidth Latin letters and digits are folded before this applies.
_CJK_RANGES = (
    (0x3041, 0x30A0),  # hiragana
    (0x30A0, 0x3100),  # katakana
    (0x31F0, 0x3200),  # katakana phonetic extensions
    (0x3400, 0x4DC0),  # CJK extension A
    (0x4E00, 0xA000),  # CJK unified ideographs
    (0xF900, 0xFB00),  # CJK compatibility ideographs
    (0xAC00, 0xD7B0),  # Hangul syllables
    (0x20000, 0x31350),  # CJK extensions B–H
)
_OTHER, _WORD_CHAR, _CJK_CHAR = 0, 1, 2

# Compatibility characters folded to their NFKC form, the ones met in real documents: Latin-1
# extras, super/subscripts, letterlike symbols (℃, №), number forms (Ⅲ), circled numbers (①),
# the ideographic space, enclosed CJK (㈱) and CJK units (㎏), ligatures (ﬁ), fullwidth and
# halfwidth forms (ＥＲＲ０４, ｶﾀｶﾅ). Folding by table is ~10x faster than
# `unicodedata.normalize("NFKC", …)` over a whole CJK text.
_FOLD_BLOCKS = (
    (0x00A0, 0x0100),
    (0x2070, 0x20A0),
    (0x2100, 0x2190),
    (0x2460, 0x2500),
    (0x3000, 0x3001),
    (0x3200, 0x3400),
    (0xFB00, 0xFB07),
    (0xFF01, 0xFFEF),
)
_HALFWIDTH_KANA_MARKS = "\uff9e\uff9f"  # ﾞ ﾟ: compose with the kana before them (ｶﾞ → ガ)
_KANA_WITH_MARK = re.compile("[\u3041-\u30ff][\u3099\u309a]")


@dataclass(frozen=True)
class _CharTables:
    """Lookup arrays over every code point, built on first use (~0.3 s, 7 MB). Looking code
    points up in arrays is several times faster than regexes and `str` methods over non-ASCII
    text."""

    fold: np.ndarray  # uint32: the code point lower-cased and folded, when that is one character
    needs_text_fold: np.ndarray  # bool: folds to several characters (㎏ → kg), or composes (ﾞ)
    text_fold: dict[str, str]  # those characters' folds
    text_fold_pattern: re.Pattern
    classes: np.ndarray  # uint8: _CJK_CHAR, _WORD_CHAR (what `\w` matches) or _OTHER


_char_tables_built: _CharTables | None = None
_char_tables_lock = threading.Lock()


def _char_tables() -> _CharTables:
    global _char_tables_built
    if _char_tables_built is None:
        with _char_tables_lock:
            if _char_tables_built is None:
                _char_tables_built = _char_tables_build()
    return _char_tables_built


def _char_tables_build() -> _CharTables:
    every = "".join(map(chr, range(0x110000)))
    # str.lower() maps each code point to one, except İ (U+0130 → i + a combining dot).
    lowered = every.replace("\u0130", "i").lower()
    fold = np.frombuffer(lowered.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
    needs_text_fold = np.zeros(0x110000, dtype=bool)
    text_fold: dict[str, str] = {}
    for first, stop in _FOLD_BLOCKS:
        for code in range(first, stop):
            folded = unicodedata.normalize("NFKC", chr(code)).lower()
            if len(folded) == 1:
                fold[code] = ord(folded)
            else:
                needs_text_fold[code] = True
                text_fold[chr(code)] = folded
    # A halfwidth ﾞ or ﾟ sends its text to `_text_fold`, which folds the halfwidth katakana
    # there too, so that the mark meets a kana it can compose with.
    for code in range(0xFF61, 0xFFA0):
        text_fold[chr(code)] = unicodedata.normalize("NFKC", chr(code))
    for mark in _HALFWIDTH_KANA_MARKS:
        needs_text_fold[ord(mark)] = True
    classes = np.zeros(0x110000, dtype=np.uint8)
    for match in re.finditer(r"\w+", every):
        classes[match.start() : match.end()] = _WORD_CHAR
    for first, stop in _CJK_RANGES:
        classes[first:stop] = np.where(classes[first:stop] == _WORD_CHAR, _CJK_CHAR, _OTHER)
    pattern = re.compile("[" + "".join(re.escape(char) for char in text_fold) + "]")
    return _CharTables(fold, needs_text_fold, text_fold, pattern, classes)


def _text_fold(text: str, tables: _CharTables) -> str:
    """The folds a table cannot do: one character to several, and composing kana marks."""
    text = tables.text_fold_pattern.sub(lambda match: tables.text_fold[match[0]], text)
    return _KANA_WITH_MARK.sub(lambda match: unicodedata.normalize("NFC", match[0]), text)


# Feature kinds and the weight of one occurrence of each (before sublinear tf). Words carry the
# meaning; word pairs reward shared phrases and codes written as two tokens (`E-1234` →
# `e 1234`); the 3-grams of each word (with its edges: ` re`, `res`, … `et `) let `resets` meet
# `reset` and survive typos, at a weight low enough not to drown the words. In CJK text,
# character pairs do the work of words (as pg_bigm does) and single characters help
# one-character queries.
_WORD_KIND, _WORD_PAIR_KIND, _TRIGRAM_KIND, _CJK_CHAR_KIND, _CJK_PAIR_KIND = 1, 2, 3, 4, 5
_KIND_WEIGHTS = np.array([0.0, 1.0, 0.7, 0.3, 0.5, 1.0, 0.0, 0.0])
# Sublinear term frequency, 1 + ln(tf), looked up: np.log over every feature costs more.
_DAMPING = np.concatenate(([0.0], 1.0 + np.log(np.arange(1, 1024))))

# A feature is a 48-bit value: bit 47 its sign, bits 3–34 pick its slot, bits 0–2 its kind.
# The 16 bits above hold the text's place in its group, so one sort counts every text at once.
_FEATURE_BITS = np.uint64(48)
_KIND_MASK = np.uint64(7)
_SIGN_BIT = np.uint64(1 << 47)

# Salts make the kinds hash independently of each other.
_SALT_WORD = np.uint64(0xD1B54A32D192ED03)
_SALT_WORD_PAIR = np.uint64(0x8CB92BA72F3D8DD7)
_SALT_TRIGRAM = np.uint64(0xAEF17502108EF2D9)
_SALT_CJK_CHAR = np.uint64(0xF1357AEA2E62A9C5)
_SALT_CJK_PAIR = np.uint64(0x2545F4914F6CDD1D)
_PAIR_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT_MIX = np.uint64(33)
_SPACE = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


# Texts are hashed in groups: numpy's per-call cost is paid once per group, not per text.
_GROUP_TEXTS = 64
_GROUP_CHARS = 256_000


def _mix(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: a stable, well-spread hash of uint64 keys
    (unlike Python's `hash()`, the same in every process and on every machine)."""
    x ^= x >> _SHIFT_MIX
    x *= _MIX1
    x ^= x >> _SHIFT_MIX
    x *= _MIX2
    x ^= x >> _SHIFT_MIX
    return x


def _tagged(hashes: np.ndarray, kind: int) -> np.ndarray:
    """48-bit features from 64-bit hashes (consumed): the top 48 bits, `kind` in the lowest 3."""
    hashes >>= np.uint64(16)
    hashes &= ~_KIND_MASK
    hashes |= np.uint64(kind)
    return hashes


def _codepoints(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate (possible in a Python str) is a code point like any other.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class LocalHashingEmbeddingProvider:
    """Offline, deterministic embeddings by feature hashing — no model, no network.

    Each text becomes a bag of features, each hashed (a stable 64-bit hash, not Python's
    `hash()`) to a signed slot of the vector:

    - lower-cased words (letters, digits, `_`) and pairs of adjacent words,
    - character 3-grams of each word, weighted lower, so inflections and typos still overlap,
    - for Chinese, Japanese and Korean runs: single characters and character pairs.

    Counts are damped (1 + log tf) and the vector is L2-normalised, so cosine similarity is a
    weighted share of features. Fullwidth and other compatibility characters are folded first
    (`ＥＲＲ－０４` = `ERR-04`). A text without letters or digits gets a fixed unit vector.

    Good at: exact words, part numbers and error codes (`E-1234`, `0x80070005`), texts that share
    vocabulary, CJK substrings (a query `電池交換` finds `電池交換の手順`), and being fully offline,
    fast and identical on every machine. Bad at: synonyms and meaning (`car` vs `automobile`),
    paraphrase, and anything across languages (`battery` vs `電池`) — it matches surface form
    only. Changing the features or weights changes every vector: bump `model`.
    """

    name = "local"
    model = "local-hash-v1"
    is_offline = True
    limits = EmbeddingLimits(max_inputs=2048, max_input_tokens=100_000, max_request_tokens=10**7)

    def __init__(self, *, dimensions: int) -> None:
        self.dimensions = dimensions

    def __repr__(self) -> str:
        return f"LocalHashingEmbeddingProvider({self.dimensions})"

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        group: list[str] = []
        chars = 0
        for text in texts:
            if group and (len(group) >= _GROUP_TEXTS or chars + len(text) > _GROUP_CHARS):
                vectors.extend(self.embed_arrays(group).tolist())
                group, chars = [], 0
            group.append(text)
            chars += len(text)
        if group:
            vectors.extend(self.embed_arrays(group).tolist())
        return vectors

    def embed_arrays(self, texts: list[str]) -> np.ndarray:
        """The vectors of up to 65,536 texts as a float64 array (texts × dimensions), each row
        of L2 norm 1."""
        dimensions = self.dimensions
        tables = _char_tables()
        texts = list(texts)
        raw, owners = _joined_codepoints(texts)
        flagged = tables.needs_text_fold[raw]
        if flagged.any():  # rare: ㎏, ½, ﬁ, halfwidth ｶﾞ
            for index in np.unique(owners[flagged]).tolist():
                texts[index] = _text_fold(texts[index], tables)
            raw, owners = _joined_codepoints(texts)
        codes = tables.fold[raw].astype(np.uint64)
        features, feature_owners = _features(codes, owners, tables.classes[codes])

        # Count each feature within its text: sort (text, feature) keys, find the runs.
        keys = feature_owners << _FEATURE_BITS
        keys |= features
        keys.sort()
        is_first = np.empty(keys.size, dtype=bool)
        is_first[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=is_first[1:])
        starts = np.flatnonzero(is_first)
        unique = keys[starts]
        counts = np.diff(starts, append=keys.size)

        damping = _DAMPING[np.minimum(counts, _DAMPING.size - 1)]
        beyond = counts >= _DAMPING.size
        if beyond.any():
            damping[beyond] = 1.0 + np.log(counts[beyond])
        values = _KIND_WEIGHTS[(unique & _KIND_MASK).astype(np.intp)] * damping
        values[(unique & _SIGN_BIT) == 0] *= -1.0
        # Slot from 32 hash bits by multiply-shift (Lemire): fast, and no modulo bias to speak of.
        slots = ((unique >> np.uint64(3)) & _LOW32) * np.uint64(dimensions) >> np.uint64(32)
        slots += (unique >> _FEATURE_BITS) * np.uint64(dimensions)
        matrix = (
            np.bincount(slots.astype(np.intp), weights=values, minlength=len(texts) * dimensions)
            # With no features at all (e.g. only punctuation) bincount answers in integers.
            .astype(np.float64, copy=False)
            .reshape(len(texts), dimensions)
        )
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        # No features (empty or punctuation-only text): a fixed unit vector, never zeros, so
        # cosine distance stays defined.
        empty = norms == 0.0
        matrix[empty, 0] = 1.0
        norms[empty] = 1.0
        matrix /= norms[:, None]
        return matrix

    def embed_array(self, text: str) -> np.ndarray:
        """One text's vector as a float64 array of `dimensions` elements, L2 norm 1."""
        return self.embed_arrays([text])[0]


def _joined_codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The code points of the texts joined by NULs, with a NUL at each end, and for each code
    point the index of its text. A NUL is never part of a feature, so features stop at text
    boundaries and every character has a neighbour on both sides."""
    codes = _codepoints("\0" + "\0".join(texts) + "\0")
    lengths = np.fromiter(map(len, texts), dtype=np.intp, count=len(texts))
    owners = np.zeros(codes.size, dtype=np.uint64)
    owners[1:] = np.repeat(np.arange(len(texts), dtype=np.uint64), lengths + 1)
    return codes, owners


def _features(
    codes: np.ndarray, owners: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every feature occurrence in `codes` (lower-cased and folded code points, from
    `_joined_codepoints`) with the index of the text it belongs to."""
    features: list[np.ndarray] = []
    feature_owners: list[np.ndarray] = []

    is_word = classes == _WORD_CHAR
    at = np.flatnonzero(is_word)  # positions of word characters; never the first or the last
    if at.size:
        chars = codes[at]
        starts = np.flatnonzero(~is_word[at - 1])  # where each word begins, within `chars`
        # 3-grams centred on each word character, a space standing for the word's edges.
        before = np.empty_like(chars)
        before[1:] = chars[:-1]
        before[starts] = _SPACE
        after = np.empty_like(chars)
        after[:-1] = chars[1:]
        after[starts[1:] - 1] = _SPACE
        after[-1] = _SPACE
        before <<= np.uint64(42)
        before |= chars << np.uint64(21)
        before |= after
        trigrams = _mix(before ^ _SALT_TRIGRAM)
        # A word is identified by its 3-grams (edges included): their hashes' wrapping sum.
        words = _mix(np.add.reduceat(trigrams, starts) ^ _SALT_WORD)
        word_owners = owners[at[starts]]
        same_text = word_owners[:-1] == word_owners[1:]
        if same_text.any():
            pairs = (words[:-1] * _PAIR_MULTIPLIER) ^ words[1:]
            features.append(_tagged(_mix(pairs[same_text] ^ _SALT_WORD_PAIR), _WORD_PAIR_KIND))
            feature_owners.append(word_owners[:-1][same_text])
        features.append(_tagged(words, _WORD_KIND))
        feature_owners.append(word_owners)
        features.append(_tagged(trigrams, _TRIGRAM_KIND))
        feature_owners.append(owners[at])

    is_cjk = classes == _CJK_CHAR
    if is_cjk.any():
        features.append(_tagged(_mix(codes[is_cjk] ^ _SALT_CJK_CHAR), _CJK_CHAR_KIND))
        feature_owners.append(owners[is_cjk])
        both = is_cjk[:-1] & is_cjk[1:]  # never across texts: a NUL separates them
        if both.any():
            pairs = ((codes[:-1] << np.uint64(21)) | codes[1:])[both]
            features.append(_tagged(_mix(pairs ^ _SALT_CJK_PAIR), _CJK_PAIR_KIND))
            feature_owners.append(owners[:-1][both])

    if not features:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)
    return np.concatenate(features), np.concatenate(feature_owners)


# --- Choosing the provider ----------------------------------------------------------------------

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


# --- Fitting inputs to the limits ---------------------------------------------------------------

# Share of a token limit we plan to use. tiktoken's count is exact for OpenAI's models, but the
# server may run another tokenizer (OPENAI_BASE_URL), hence a little slack; the estimator can be
# 20–25 % low for short-word English and symbol-heavy text, hence more.
EXACT_TOKEN_MARGIN = 0.95
ESTIMATED_TOKEN_MARGIN = 0.75
# Per request, counts come without saying how they were made; a rejected oversize request is
# bisected anyway, so this only has to make rejections rare.
REQUEST_TOKEN_MARGIN = 0.8


def input_token_budget(*, limits: EmbeddingLimits, counter: TokenCounter) -> int:
    margin = EXACT_TOKEN_MARGIN if counter.is_exact else ESTIMATED_TOKEN_MARGIN
    return max(1, int(limits.max_input_tokens * margin))


def fit_input(text: str, *, limits: EmbeddingLimits, counter: TokenCounter) -> str:
    """`text`, or its longest prefix (cut between characters) that `counter` puts within the
    input budget: `max_input_tokens` × 0.95 for an exact counter, × 0.75 for an estimate.

    The API refuses an over-long input rather than truncating it; the rule here keeps the
    beginning — titles, headings and the first paragraphs — which usually says what a text is
    about. Texts within the budget come back unchanged.
    """
    budget = input_token_budget(limits=limits, counter=counter)
    if len(text.encode("utf-8")) <= budget:
        # Byte-level BPE never makes more tokens than bytes (nor does our estimator): no need
        # to count.
        return text
    total = counter.count(text)
    if total <= budget:
        return text
    # Invariant: text[:low] fits, text[:high] does not. Start next to the proportional guess.
    low, high = 0, len(text)
    guess = len(text) * budget // total
    if 0 < guess < high:
        if counter.count(text[:guess]) <= budget:
            low = guess
        else:
            high = guess
    while high - low > 1:
        middle = (low + high) // 2
        if counter.count(text[:middle]) <= budget:
            low = middle
        else:
            high = middle
    return text[:low]


def plan_batches(
    token_counts: Sequence[int], *, limits: EmbeddingLimits, margin: float = REQUEST_TOKEN_MARGIN
) -> list[list[int]]:
    """Indices of `token_counts` grouped in order into requests of at most `max_inputs` inputs
    and `max_request_tokens` × `margin` tokens. A single input over that budget (which
    `fit_input` prevents) gets a request of its own."""
    budget = max(1, int(limits.max_request_tokens * margin))
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for index, count in enumerate(token_counts):
        count = max(1, count)  # the API counts an input as at least one token
        if current and (len(current) >= limits.max_inputs or current_tokens + count > budget):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(index)
        current_tokens += count
    if current:
        batches.append(current)
    return batches


# --- Pacing ------------------------------------------------------------------------------------


class RequestPacer:
    """Keeps this process under the provider's requests- and tokens-per-minute limits
    (`KIOKU_EMBEDDING_RPM`, `KIOKU_EMBEDDING_TPM`; 0 = none) with a sliding 60 s window, the way
    the API counts, so limits are met by waiting instead of by 429s.

    A request's tokens are estimated with our counter, scaled by the ratio between what the
    server reported and what we estimated so far (our estimator is not the server's tokenizer),
    and replaced by the server's figure once the answer arrives. With several worker processes,
    give each its share of the limit."""

    def __init__(
        self,
        *,
        rpm: int = 0,
        tpm: int = 0,
        window: float = 60.0,
        headroom: float = 0.98,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = int(tpm * headroom)
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.events: list[list[float]] = []  # [sent_at, tokens]
        self.ratio = 1.0  # server tokens / estimated tokens
        self.lock = threading.Lock()

    def acquire(self, estimated_tokens: int) -> list[float]:
        while True:
            with self.lock:
                now = self.clock()
                self.events = [event for event in self.events if event[0] > now - self._span()]
                tokens = estimated_tokens * self.ratio
                if self.tpm and tokens > self.tpm:
                    tokens = self.tpm  # a single request larger than the limit: send it alone
                over_requests = self.rpm and len(self.events) + 1 > self.rpm
                over_tokens = self.tpm and sum(e[1] for e in self.events) + tokens > self.tpm
                if not over_requests and not over_tokens:
                    event = [now, tokens]
                    self.events.append(event)
                    return event
                wait = self._wait_needed(now, tokens)
            # Re-check often: other threads settle or release capacity meanwhile.
            self.sleep(min(max(wait, 0.01), 0.25))

    def _span(self) -> float:
        # The server's window starts when it receives a request, a little after we send it:
        # keep events slightly longer than the window so the two never disagree.
        return self.window + min(0.2, self.window * 0.01)

    def _wait_needed(self, now: float, tokens: float) -> float:
        """Time until enough of the window has expired for this request."""
        waits = []
        if self.rpm and len(self.events) + 1 > self.rpm:
            waits.append(self.events[len(self.events) - self.rpm][0] + self._span() - now)
        if self.tpm:
            excess = sum(e[1] for e in self.events) + tokens - self.tpm
            for sent_at, used in self.events:
                excess -= used
                if excess <= 0:
                    waits.append(sent_at + self._span() - now)
                    break
        return max(waits, default=0.0)

    def settle(
        self, event: list[float], *, estimated_tokens: int, actual_tokens: int | None
    ) -> None:
        if actual_tokens is None:
            return
        with self.lock:
            # The server counted the request somewhere between our send and its answer: keep
            # the later moment so our window never expires before the server's does.
            event[0] = self.clock()
            event[1] = actual_tokens
            if estimated_tokens > 0:
                # Smoothed, so one odd request does not swing the estimate.
                self.ratio = 0.7 * self.ratio + 0.3 * (actual_tokens / estimated_tokens)


_pacers: dict[tuple[int, int], RequestPacer] = {}
_pacers_lock = threading.Lock()


def get_request_pacer() -> RequestPacer | None:
    """The process-wide pacer for the configured limits (None when no limit is set)."""
    rpm, tpm = settings.KIOKU_EMBEDDING_RPM, settings.KIOKU_EMBEDDING_TPM
    if not rpm and not tpm:
        return None
    with _pacers_lock:
        if (rpm, tpm) not in _pacers:
            _pacers[(rpm, tpm)] = RequestPacer(rpm=rpm, tpm=tpm)
        return _pacers[(rpm, tpm)]


# --- Retries ------------------------------------------------------------------------------------

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_SECONDS = 30.0


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
            if len(group) == 1:
                outcome.errors[group[0]] = exc.message
            elif exc.index is not None and 0 <= exc.index < len(group):
                outcome.errors[group[exc.index]] = exc.message
                pending.append(group[: exc.index] + group[exc.index + 1 :])
            else:
                half = len(group) // 2
                pending.append(group[half:])
                pending.append(group[:half])  # popped first: inputs settle in order
            continue
        for index, vector in zip(group, vectors, strict=True):
            if len(vector) != provider.dimensions:
                raise ProviderConfigError(
                    f"{provider.name} model {provider.model!r} returned {len(vector)}-dimensional "
                    f"vectors, but KIOKU_EMBEDDING_DIMENSIONS is {provider.dimensions}: configure "
                    "the size the model produces (the vector column must match) or another model."
                )
            outcome.vectors[index] = vector
    return outcome


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
            if exc.retry_after is not None and exc.retry_after > max_wait:
                raise RetryLaterError(
                    f"The server asked to wait {exc.retry_after:g} s, longer than a worker may "
                    f"block ({max_wait:g} s): {exc.message}",
                    retry_after=exc.retry_after,
                ) from exc
            if attempt >= max_attempts:
                raise
            if exc.retry_after is not None:
                wait = max(exc.retry_after, rng() * BACKOFF_BASE_SECONDS)
            else:
                ceiling = BACKOFF_BASE_SECONDS * BACKOFF_FACTOR ** (attempt - 1)
                wait = rng() * min(ceiling, BACKOFF_CAP_SECONDS, max_wait)
            sleep(wait)
            outcome.retries += 1
