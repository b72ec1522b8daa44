"""The templates keep the Content-Security-Policy's rule without a browser: no inline script,
style block, style attribute, event handler, hx-on (needs eval) or javascript: URL."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
APP_HTML = sorted(
    path
    for app in ("core", "knowledge", "sessions_app", "dispatch", "quality", "config")
    for path in (ROOT / app).rglob("*.py")
    if "migrations" not in path.parts
)
FORBIDDEN = {
    "inline script": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I),
    "style block": re.compile(r"<style[\s>]", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "hx-on": re.compile(r"\s(hx|data-hx)-on", re.I),
    "js: value": re.compile(r"hx-(vals|headers)\s*=\s*['\"]\s*(js|javascript):", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def test_there_are_templates_to_check():
    assert len(TEMPLATES) > 30


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_a_template_has_nothing_inline(path):
    text = path.read_text()
    found = [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert not found, found


def test_python_builds_no_inline_markup():
    """HTML written in Python (format_html, f-strings for the admin or citations) follows the same
    rule: every line that opens a tag is checked."""
    tag = re.compile(r"<[a-z][a-z0-9]*[\s>]")
    checked = 0
    for path in APP_HTML:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not tag.search(line):
                continue
            checked += 1
            found = [name for name, pattern in FORBIDDEN.items() if pattern.search(line)]
            assert not found, (f"{path.relative_to(ROOT)}:{number}", found)
    assert checked >= 2  # the citation link and the admin's chunk link at least
