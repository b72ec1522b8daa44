"""The local, offline embedding provider: deterministic hashed features, no model weights."""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from knowledge.embed.base import EmbeddingLimits

if TYPE_CHECKING:
    pass


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
