"""Splitting extracted sections into chunks that fit a token budget, with overlap.

How a section is cut (`chunk_sections`):

1. The section is split into units, coarsest first: paragraphs (blank lines), then lines, then
   sentences (`.`, `!`, `?` followed by whitespace; `。．！？；` with or without), then words
   (whitespace; for CJK also after `、` and `，`), then groups of characters, then single
   characters (and, for a character with more accents than the budget holds, code points).
   A piece is split at the next level only when it alone exceeds `max_tokens`, so a
   paragraph that fits is always one unit and chunk boundaries fall between paragraphs whenever
   they can. A word is cut only when it alone exceeds the budget (a base64 blob, a CJK run with
   no punctuation); the cut then falls between characters, never inside one, and never between
   a character and the accents or emoji joiners that follow it.
2. Units are packed greedily, in order, up to `max_tokens`. Each unit keeps the separator that
   follows it, so a chunk is an exact slice of the section text, trimmed of surrounding
   whitespace, and `location["char_start"]:location["char_end"]` addresses it.
3. Each chunk after the first starts with the tail of the previous one: its trailing units
   totalling at most `overlap_tokens`. When the last unit is larger than the overlap, the tail is
   taken from inside it, down to whole sentences; only when the last sentence alone exceeds the
   overlap does the tail fall back to trailing words (or characters), because some context is
   better than none. The overlap yields to new content: it is trimmed from the front when it and
   the next unit do not fit together, so every chunk adds at least one new unit. A chunk wholly
   repeated at the start of the next one is dropped.
4. `token_count` is `counter.count(chunk.content)`. Unit counts are summed while packing (so
   each unit is counted once); the joined chunk is counted again, and if tiktoken merges make it
   exceed `max_tokens` the chunk gives back its last unit.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from django.conf import settings

from knowledge.errors import CHUNKING_INVALID_CONFIG
from knowledge.ingest.base import ChunkDraft, Section
from knowledge.tokens import TokenCounter, get_token_counter

logger = logging.getLogger(__name__)

MIN_MAX_TOKENS = 16


class ChunkingConfigError(ValueError):
    code = CHUNKING_INVALID_CONFIG


@dataclasses.dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 1000
    overlap_tokens: int = 200

    def __post_init__(self) -> None:
        for name in ("max_tokens", "overlap_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ChunkingConfigError(f"{name} must be an integer, got {value!r}.")
        if self.max_tokens < MIN_MAX_TOKENS:
            raise ChunkingConfigError(
                f"max_tokens must be at least {MIN_MAX_TOKENS}, got {self.max_tokens}."
            )
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ChunkingConfigError(
                f"overlap_tokens must be at least 0 and less than max_tokens "
                f"({self.max_tokens}), got {self.overlap_tokens}."
            )


DEFAULT_CONFIG = ChunkingConfig(max_tokens=1000, overlap_tokens=200)

# Built-in budgets per KnowledgeSource.source_type; the KIOKU_CHUNKING setting overrides them.
SOURCE_TYPE_CONFIGS: dict[str, ChunkingConfig] = {
    "document": DEFAULT_CONFIG,
    "manual": DEFAULT_CONFIG,
    "sop": DEFAULT_CONFIG,
    "web": DEFAULT_CONFIG,
    "case": DEFAULT_CONFIG,
    # An FAQ entry is a short question with its answer: small chunks keep one entry per chunk,
    # and neighbouring entries share little context worth repeating.
    "faq": ChunkingConfig(max_tokens=500, overlap_tokens=50),
    # Archived chat sessions: a few turns per chunk, with enough overlap to keep a question next
    # to its answer when a boundary falls between them.
    "session": ChunkingConfig(max_tokens=800, overlap_tokens=150),
}


def config_for_source_type(source_type: str) -> ChunkingConfig:
    """The chunking budget for a source type.

    Built-in values (`SOURCE_TYPE_CONFIGS`; 1000/200 for unknown types) can be overridden per
    type by the `KIOKU_CHUNKING` setting, e.g. `{"faq": {"max_tokens": 400}}`; keys left out
    keep their built-in value.
    """
    base = SOURCE_TYPE_CONFIGS.get(source_type, DEFAULT_CONFIG)
    overrides = getattr(settings, "KIOKU_CHUNKING", None) or {}
    if not isinstance(overrides, Mapping):
        raise ChunkingConfigError("The KIOKU_CHUNKING setting must be a dict keyed by source type.")
    override = overrides.get(source_type)
    if override is None:
        return base
    where = f"KIOKU_CHUNKING[{source_type!r}]"
    if not isinstance(override, Mapping):
        raise ChunkingConfigError(f"{where} must be a dict with max_tokens and/or overlap_tokens.")
    unknown = sorted(map(str, set(override) - {"max_tokens", "overlap_tokens"}))
    if unknown:
        raise ChunkingConfigError(f"{where} has unknown keys: {', '.join(unknown)}.")
    try:
        return dataclasses.replace(base, **override)
    except ChunkingConfigError as exc:
        raise ChunkingConfigError(f"{where}: {exc}") from exc


def chunk_sections(
    sections: Iterable[Section],
    *,
    config: ChunkingConfig,
    counter: TokenCounter | None = None,
) -> list[ChunkDraft]:
    """Chunks for each section in turn; a chunk never spans two sections. See the module
    docstring for where cuts fall and how the overlap is chosen."""
    counter = counter or get_token_counter()
    drafts: list[ChunkDraft] = []
    for section in sections:
        drafts.extend(_section_chunk(section, config=config, counter=counter))
    return drafts


def chunk_text(
    text: str, *, config: ChunkingConfig, counter: TokenCounter | None = None
) -> list[ChunkDraft]:
    """`chunk_sections` for one untitled section."""
    return chunk_sections([Section(text=text)], config=config, counter=counter)


# --- Units --------------------------------------------------------------------------------------

PARAGRAPH, LINE, SENTENCE, WORD, CHAR_GROUP, CHAR, CODE_POINT = range(7)

_SEPARATORS = {
    PARAGRAPH: re.compile(r"\n\s*\n\s*"),
    LINE: re.compile(r"\n"),
    # One leading character class lets `re` skip ahead fast; the look-behinds pick the branch.
    SENTENCE: re.compile(
        r"[.!?。．｡！？；]"
        r"(?:(?<=[.!?])[.!?]*[\"'”’»)\]]*\s+"  # Latin: whitespace must follow ("3.14" is one word)
        r"|(?<=[。．｡！？；])[。．｡！？；]*[」』”’）〕】〉》\"')\]]*\s*)"  # CJK: no space follows
    ),
    WORD: re.compile(r"\s+|[、，]\s*"),
}

# Code points that belong to the character before them: accents, emoji joiners and modifiers.
_ZWJ = "\u200d"
_JOINING = frozenset("\u200d\ufe0e\ufe0f\u20e3") | frozenset(map(chr, range(0x1F3FB, 0x1F400)))


class _Unit(NamedTuple):
    start: int
    end: int
    tokens: int
    level: int  # the split level that produced this unit


def _pieces(text: str, start: int, end: int, level: int, max_tokens: int) -> list[tuple[int, int]]:
    """[start, end) cut at `level`; each piece keeps its trailing separator, and whitespace
    before the first or after the last cut is folded into its neighbour."""
    if level == CHAR_GROUP:
        # Groups short enough that even a byte-level BPE (≤ 4 tokens per code point) fits.
        bounds = _char_bounds(text, start, end, size=max(1, max_tokens // 16))
    elif level == CHAR:
        bounds = _char_bounds(text, start, end, size=1)
    elif level == CODE_POINT:
        # Last resort for a character carrying more accents than the budget holds ("Zalgo").
        bounds = list(range(start, end + 1))
    else:
        cuts = [match.end() for match in _SEPARATORS[level].finditer(text, start, end)]
        if cuts and cuts[-1] == end:
            cuts.pop()  # a separator at the very end stays with the last piece
        bounds = [start, *cuts, end]
    if len(bounds) > 2 and text[bounds[0] : bounds[1]].isspace():
        del bounds[1]
    if len(bounds) > 2 and text[bounds[-2] : bounds[-1]].isspace():
        del bounds[-2]
    return list(zip(bounds, bounds[1:], strict=False))


def _char_bounds(text: str, start: int, end: int, *, size: int) -> list[int]:
    """Cuts every `size` characters, moved forward past accents and emoji joiners."""
    bounds = [start]
    cut = start + size
    while cut < end:
        while cut < end and (
            text[cut] in _JOINING
            or text[cut - 1] == _ZWJ
            or unicodedata.category(text[cut]) in ("Mn", "Mc", "Me")
        ):
            cut += 1
        if cut >= end:
            break
        bounds.append(cut)
        cut += size
    bounds.append(end)
    return bounds


def _units(
    text: str,
    start: int,
    end: int,
    *,
    level: int,
    tokens: int | None,
    counter: TokenCounter,
    max_tokens: int,
    out: list[_Unit],
) -> None:
    """Append to `out` the units of [start, end), cut at `level` and finer until each fits.

    `tokens` is the region's count when known. A region that does not split at a level goes
    down one with the count it has: above the word level an uncounted region is not counted
    until it splits."""
    if level > CODE_POINT:
        logger.warning("One code point counts %s tokens, over max_tokens=%s.", tokens, max_tokens)
        out.append(_Unit(start, end, tokens or 0, CODE_POINT))
        return
    pieces = _pieces(text, start, end, level, max_tokens)
    if len(pieces) == 1 and (tokens is not None or level < WORD):
        _units(
            text,
            start,
            end,
            level=level + 1,
            tokens=tokens,
            counter=counter,
            max_tokens=max_tokens,
            out=out,
        )
        return
    if level == CHAR_GROUP:
        logger.debug("Cutting a %d-character run with no spaces or punctuation.", end - start)
    counts = counter.encode_len_many([text[s:e] for s, e in pieces])
    for (s, e), count in zip(pieces, counts, strict=True):
        if count <= max_tokens:
            out.append(_Unit(s, e, count, level))
        else:
            _units(
                text,
                s,
                e,
                level=level + 1,
                tokens=count,
                counter=counter,
                max_tokens=max_tokens,
                out=out,
            )


# --- Packing ------------------------------------------------------------------------------------


class _Span(NamedTuple):
    start: int  # char_start
    end: int  # char_end
    tokens: int


def _section_chunk(
    section: Section, *, config: ChunkingConfig, counter: TokenCounter
) -> list[ChunkDraft]:
    text = section.text
    if not text or text.isspace():
        return []
    units: list[_Unit] = []
    _units(
        text,
        0,
        len(text),
        level=PARAGRAPH,
        tokens=None,
        counter=counter,
        max_tokens=config.max_tokens,
        out=units,
    )
    spans = _pack(text, units, config=config, counter=counter)
    location: dict = {"heading_path": list(section.heading_path)}
    if section.page is not None:
        location["page"] = section.page
    return [
        ChunkDraft(
            content=text[start:end],
            token_count=tokens,
            location={**location, "char_start": start, "char_end": end},
            token_counter=counter.name,
        )
        for start, end, tokens in spans
    ]


def _pack(
    text: str, units: list[_Unit], *, config: ChunkingConfig, counter: TokenCounter
) -> list[_Span]:
    """Steps 2 and 3 of the module docstring: the chunks' spans, each chunk after the first
    starting with the overlap tail of the one before. `units` may be cut finer on the way."""
    spans: list[_Span] = []
    carry: list[_Unit] = []
    i = 0
    while i < len(units):
        chunk, first_new, i = _fill(text, units, i, carry, max_tokens=config.max_tokens)
        span, first_new, i = _fit_joined(
            text, units, i, chunk, first_new, counter=counter, max_tokens=config.max_tokens
        )
        if span is None:
            continue  # the lone unit was cut finer: pack again from the same overlap
        if not _has_text(text, chunk[first_new].start, chunk[-1].end):
            continue  # nothing new but whitespace: not worth a chunk
        while spans and spans[-1].start >= span.start:
            spans.pop()  # wholly repeated at the start of this chunk
        spans.append(span)
        carry = (
            _overlap_tail(text, chunk, config=config, counter=counter)
            if config.overlap_tokens and i < len(units)
            else []
        )
    return spans


def _fill(
    text: str, units: list[_Unit], i: int, carry: list[_Unit], *, max_tokens: int
) -> tuple[list[_Unit], int, int]:
    """The overlap `carry` followed by units from `i` on, up to `max_tokens` by their summed
    counts. Returns the chunk, the position of its first new unit, and the next unit's index."""
    chunk = list(carry)
    first_new = len(chunk)  # chunk[:first_new] is the overlap
    total = sum(unit.tokens for unit in chunk)
    while i < len(units):
        unit = units[i]
        if total + unit.tokens > max_tokens:
            if len(chunk) > first_new and _has_text(text, chunk[first_new].start, unit.start):
                break
            # Nothing new in this chunk yet: the overlap makes room.
            while first_new and total + unit.tokens > max_tokens:
                total -= chunk.pop(0).tokens
                first_new -= 1
        chunk.append(unit)
        total += unit.tokens
        i += 1
    return chunk, first_new, i


def _fit_joined(
    text: str,
    units: list[_Unit],
    i: int,
    chunk: list[_Unit],
    first_new: int,
    *,
    counter: TokenCounter,
    max_tokens: int,
) -> tuple[_Span | None, int, int]:
    """Count the joined chunk; tiktoken may count it higher than its units. While it is over
    `max_tokens`, the chunk (changed in place) gives back its last new unit, else drops overlap;
    a lone unit over budget is cut finer in `units` (span None: pack again). Returns the span,
    the position of the first new unit, and the next unit's index."""
    while True:
        char_start, char_end = _strip(text, chunk[0].start, chunk[-1].end)
        token_count = counter.count(text[char_start:char_end]) if char_end > char_start else 0
        if token_count <= max_tokens:
            return _Span(char_start, char_end, token_count), first_new, i
        if len(chunk) - first_new > 1:
            chunk.pop()
            i -= 1
        elif first_new:
            chunk.pop(0)
            first_new -= 1
        else:
            finer: list[_Unit] = []
            lone = chunk[0]
            _units(
                text,
                lone.start,
                lone.end,
                level=lone.level + 1,
                tokens=token_count,
                counter=counter,
                max_tokens=max_tokens,
                out=finer,
            )
            if len(finer) == 1:
                # a single character: it stays, over budget
                return _Span(char_start, char_end, token_count), first_new, i
            units[i - 1 : i] = finer
            return None, first_new, i - 1


def _overlap_tail(
    text: str, chunk: list[_Unit], *, config: ChunkingConfig, counter: TokenCounter
) -> list[_Unit]:
    """The trailing units of `chunk` worth at most `overlap_tokens`, cut inside the last unit
    down to sentences; down to words and characters only when the tail would otherwise be
    empty."""
    budget = config.overlap_tokens
    tail: list[_Unit] = []
    pending: list[tuple[int, int, int | None, int]] = list(chunk)  # start, end, tokens, level
    while pending:
        start, end, tokens, level = pending.pop()
        if tokens is None:
            tokens = counter.count(text[start:end])
        if tokens <= budget:
            tail.append(_Unit(start, end, tokens, level))
            budget -= tokens
            continue
        finest = SENTENCE if tail else CHAR
        if level >= finest:
            break
        pieces = _pieces(text, start, end, level + 1, config.max_tokens)
        if len(pieces) == 1:
            pending.append((start, end, tokens, level + 1))
        else:
            pending.extend((s, e, None, level + 1) for s, e in pieces)
    tail.reverse()
    return tail


def _has_text(text: str, start: int, end: int) -> bool:
    return start < end and not text[start:end].isspace()


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    segment = text[start:end]
    left = segment.lstrip()
    start += len(segment) - len(left)
    return start, start + len(left.rstrip())
