"""Passages put before a chat model as untrusted data: each between two marker lines that carry
a random nonce (the fence), so text inside a document can neither end its block early nor pass
for an instruction. Used by answers (answering.build_prompt) and the LLM reranker
(search/rerank.py)."""

import secrets

from knowledge.search.base import SearchHit


def fence_new() -> str:
    """A nonce no document can guess."""
    return secrets.token_hex(8)


def location_text(location: dict) -> str:
    heading = location.get("heading_path") or location.get("headings")
    if isinstance(heading, list):
        heading = " > ".join(str(part) for part in heading)
    parts = [str(heading)] if heading else []
    if location.get("page"):
        parts.append(f"page {location['page']}")
    return ", ".join(parts)


def fenced_passages(
    hits: list[SearchHit], *, fence: str, label: str = "SOURCE", max_chars: int | None = None
) -> list[str]:
    """One block per hit, numbered from 1: `<<<{label} n {fence}>>>`, the title, type and
    section, the text (cut at `max_chars` if given), `<<<END {label} n {fence}>>>`."""
    blocks = []
    for number, hit in enumerate(hits, 1):
        # The nonce cannot be guessed; removing it anyway keeps a fence unique even if a document
        # happened to contain it.
        content = hit.content if max_chars is None else hit.content[:max_chars]
        text = content.replace(fence, "")
        title = hit.source_title.replace(fence, "")
        where = location_text(hit.location).replace(fence, "")
        header = f"title: {title}\ntype: {hit.source_type}" + (
            f"\nsection: {where}" if where else ""
        )
        blocks.append(
            f"<<<{label} {number} {fence}>>>\n{header}\n\n{text}\n<<<END {label} {number} {fence}>>>"
        )
    return blocks
