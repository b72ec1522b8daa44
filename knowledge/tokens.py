"""Token counting for chunking and embedding budgets.

`get_token_counter()` returns the exact tiktoken counter for the configured encoding
(`KIOKU_TOKEN_ENCODING`, default `cl100k_base`) when tiktoken can load it, and otherwise the
`EstimatedTokenCounter`, so an offline machine still ingests documents.

tiktoken downloads its encoding files on first use and caches them in `TIKTOKEN_CACHE_DIR`
(default: `<tmp>/data-gym-cache`). Without network the download fails: on a machine with no DNS
this takes about 0.3 s (`requests.exceptions.ConnectionError`); where packets are silently
dropped it could hang, so the load runs in a daemon thread and is abandoned after
`ENCODING_LOAD_TIMEOUT_SECONDS`. Either way it is attempted once per process and encoding name.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from django.conf import settings

if TYPE_CHECKING:
    import tiktoken

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "cl100k_base"

# Long enough for a slow link to fetch cl100k_base (1.7 MB); a load still running when this
# expires keeps going in its daemon thread and fills tiktoken's cache for the next process.
ENCODING_LOAD_TIMEOUT_SECONDS = 15.0


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way an embedding/chat model would see the text."""

    name: str
    is_exact: bool

    def count(self, text: str) -> int: ...

    def encode_len_many(self, texts: Iterable[str]) -> list[int]: ...


class TiktokenCounter:
    """Exact counts from a `tiktoken.Encoding`. Special-token text such as `<|endoftext|>` in a
    document is counted as ordinary text instead of raising."""

    is_exact = True

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self.name = encoding.name

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def encode_len_many(self, texts: Iterable[str]) -> list[int]:
        encode = self.encoding.encode_ordinary
        return [len(encode(text)) for text in texts]

    def __repr__(self) -> str:
        return f"TiktokenCounter({self.name!r})"


# Character classes for the estimator. Python's `re` has no \p{Script}, so the ranges are explicit.
# Han ideographs and Hangul syllables: 1.25 tokens per character.
_HAN_HANGUL = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
)
# Kana, CJK punctuation (。、「」), fullwidth and halfwidth forms: 1 token per character.
_CJK_SINGLE = "\u3001-\u30ff\u31f0-\u31ff\uff00-\uffef"
# Latin letters incl. accented and Vietnamese, plus combining accents: ~5 characters per token.
_LATIN = "A-Za-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0300-\u036f\u1e00-\u1eff"

_ESTIMATE_PIECE = re.compile(
    # Latin first: the most common case, and alternatives are tried in order at every position.
    rf"[{_LATIN}]{{1,5}}"  # up to five Latin letters
    rf"|[{_HAN_HANGUL}{_CJK_SINGLE}]"  # one CJK character
    r"|\d{1,3}"  # digits, grouped by three as cl100k_base does
    rf"|[^\W\d_{_LATIN}{_HAN_HANGUL}{_CJK_SINGLE}]{{1,2}}"  # other scripts: Cyrillic, Greek, Thai…
    rf"|(?:[^\w\s{_HAN_HANGUL}{_CJK_SINGLE}]|_){{1,2}}"  # punctuation and symbols, in pairs
)
_HAN_HANGUL_CHAR = re.compile(rf"[{_HAN_HANGUL}]")


class EstimatedTokenCounter:
    """Approximates cl100k_base without its vocabulary; used when tiktoken cannot load it.

    Every match of one compiled regex counts as one token:

    - Latin words: one token per started 5 letters (`the` → 1, `quick` → 1, `configuration` → 3).
    - Digits: groups of three (`2024` → 2), exactly as cl100k_base splits numbers.
    - Han ideographs and Hangul: 1.25 tokens per character (rounded up over the whole text);
      kana, CJK punctuation and fullwidth forms: 1 token per character.
    - Other letters (Cyrillic, Greek, Arabic, Thai, Devanagari…): one token per 2 letters.
    - Punctuation and symbols: one token per started pair (`.` → 1, `...` → 2, `----` → 2).
    - Whitespace: free.

    Over-estimates: common long English words (cl100k encodes most dictionary words as one
    token: `configuration` is 1, not 3), so English prose comes out somewhat high; Japanese
    with common kana sequences
    (です, ます are single tokens), Cyrillic, and Markdown rules like `----------`.
    Under-estimates: Traditional Chinese and rare ideographs (often 2–3 byte-level tokens per
    character in cl100k), emoji (2–4 tokens each), and whitespace-heavy text such as indented
    code, where cl100k spends tokens on runs of spaces and newlines.

    The estimate is subadditive (counting two pieces separately never gives less than counting
    them joined), which keeps greedy chunk packing from overshooting its budget. It is 0 only
    for empty or whitespace-only text.
    """

    name = "estimator"
    is_exact = False

    def count(self, text: str) -> int:
        # subn with an empty replacement counts matches without building match objects or a
        # list of strings: about 1.5x faster than len(findall(...)).
        tokens = _ESTIMATE_PIECE.subn("", text)[1]
        if not text.isascii():
            # The extra quarter token per Han/Hangul character, rounded up.
            tokens += -(-_HAN_HANGUL_CHAR.subn("", text)[1] // 4)
        return tokens

    def encode_len_many(self, texts: Iterable[str]) -> list[int]:
        return [self.count(text) for text in texts]

    def __repr__(self) -> str:
        return "EstimatedTokenCounter()"


_counters: dict[str, TokenCounter] = {}
_counters_lock = threading.Lock()


def get_token_counter(encoding_name: str | None = None) -> TokenCounter:
    """The counter for `encoding_name` (default: the `KIOKU_TOKEN_ENCODING` setting).

    Falls back to `EstimatedTokenCounter` when tiktoken cannot load the encoding, logging one
    warning. The outcome is cached per encoding name for the life of the process, so the failing
    download is tried once, not on every call.
    """
    name = encoding_name or getattr(settings, "KIOKU_TOKEN_ENCODING", DEFAULT_ENCODING)
    with _counters_lock:
        counter = _counters.get(name)
        if counter is None:
            counter = _counters[name] = _counter_create(name)
    return counter


def _counter_create(name: str) -> TokenCounter:
    try:
        encoding = _encoding_load(name, timeout=ENCODING_LOAD_TIMEOUT_SECONDS)
    except Exception as exc:  # network, unknown name, corrupt cache: all mean "estimate"
        logger.warning(
            "tiktoken encoding %r unavailable (%s: %s) — no network, or the encoding is not "
            "cached; set TIKTOKEN_CACHE_DIR to a folder holding it. Using the estimator: token "
            "counts are approximate.",
            name,
            type(exc).__name__,
            exc,
        )
        return EstimatedTokenCounter()
    return TiktokenCounter(encoding)


def _encoding_load(name: str, *, timeout: float) -> tiktoken.Encoding:
    """`tiktoken.get_encoding(name)`, abandoned after `timeout` seconds.

    tiktoken fetches with `requests.get` and no timeout. A daemon thread (not an executor, whose
    threads are joined at interpreter exit) lets a stuck download be left behind.
    """
    import tiktoken

    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            outcome["encoding"] = tiktoken.get_encoding(name)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=load, name=f"tiktoken-load-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"loading took longer than {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["encoding"]  # type: ignore[return-value]
