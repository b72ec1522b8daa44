"""Snippets: a window of a chunk around the first match, HTML-escaped, matches marked."""

import html


def highlight_snippet(text: str, terms: list[str], *, width: int = 280) -> str:
    """A window of `text` around the first match, HTML-escaped, with matches in <mark>."""
    # A match's offsets must be the original text's: where lowering changes the length ("İ"
    # becomes two characters), it is done one character at a time, keeping such characters.
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = "".join(c if len(low := c.lower()) != 1 else low for c in text)
    spans = []
    for term in sorted({t for t in terms if t}, key=len, reverse=True):
        start = 0
        while (found := lowered.find(term, start)) != -1:
            spans.append((found, found + len(term)))
            start = found + len(term)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    first = merged[0][0] if merged else 0
    window_start = max(0, first - width // 3)
    window_end = min(len(text), window_start + width)
    out = ["…" if window_start > 0 else ""]
    cursor = window_start
    for start, end in merged:
        if end <= window_start or start >= window_end:
            continue
        start, end = max(start, window_start), min(end, window_end)
        out.append(html.escape(text[cursor:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        cursor = end
    out.append(html.escape(text[cursor:window_end]))
    if window_end < len(text):
        out.append("…")
    return "".join(out)
