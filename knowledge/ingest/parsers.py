"""Turn an uploaded file or pasted text into an ExtractedDocument (see documents.py).

Supported formats are plain text, Markdown, HTML and PDF. Every failure is an ExtractionError
whose `code` is one of the SOURCE_* constants below and whose `message` tells a person what to do.

All text goes through `normalize_text`: newlines become "\\n", NUL characters are removed and the
text is put in Unicode NFC form, so "é" typed as e + combining accent and "が" typed as か + a
combining dakuten match their precomposed forms in search. NFC also maps the rare CJK
compatibility ideographs (U+F900–U+FAFF) to their unified forms; ordinary Japanese and Chinese
text is unchanged. Search queries should go through the same function.

Size limits are enforced by the API, not here; every step is linear in the input size.
"""

import codecs
import io
import re
from pathlib import PurePosixPath

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from knowledge.errors import (
    SOURCE_BINARY_CONTENT,
    SOURCE_BROKEN_FILE,
    SOURCE_EMPTY,
    SOURCE_ENCRYPTED_PDF,
    SOURCE_INVALID_ENCODING,
    SOURCE_UNSUPPORTED_FORMAT,
)
from knowledge.ingest.base import ExtractedDocument, Section
from knowledge.text import normalize_text

FORMATS = ("text", "markdown", "html", "pdf")
TEXT_FORMATS = ("text", "markdown", "html")

SUPPORTED_FORMATS_HINT = (
    "Supported formats: plain text (.txt, .text, .log), Markdown (.md, .markdown), "
    "HTML (.html, .htm) and PDF (.pdf)."
)

# Plain-text titles longer than this are more likely a first paragraph than a title.
MAX_TEXT_TITLE_LENGTH = 120


class ExtractionError(Exception):
    """A source that cannot be turned into text. `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ExtractionError({self.code!r}, {self.message!r})"


# --- Format detection --------------------------------------------------------------------------

_EXTENSION_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_BINARY_EXTENSIONS = frozenset(
    {
        *(".doc", ".docx", ".docm", ".dot", ".dotx", ".odt", ".rtf", ".pages", ".epub"),
        *(".xls", ".xlsx", ".xlsm", ".ods", ".numbers", ".ppt", ".pptx", ".odp", ".key"),
        *(".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".ico"),
        *(".svg", ".psd", ".ai", ".eps"),
        *(".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst"),
        *(".mp3", ".wav", ".ogg", ".flac", ".m4a", ".mp4", ".mov", ".avi", ".mkv", ".webm"),
        *(".exe", ".dll", ".so", ".dylib", ".bin", ".dmg", ".iso", ".apk", ".msi"),
        *(".woff", ".woff2", ".ttf", ".otf", ".eot", ".sqlite", ".db", ".msg"),
    }
)
_CONTENT_TYPE_FORMATS = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
}
_BINARY_CONTENT_TYPES = (
    *("image/", "audio/", "video/", "font/"),
    *("application/zip", "application/x-zip", "application/gzip", "application/x-gzip"),
    *("application/x-tar", "application/x-7z", "application/x-rar", "application/vnd.rar"),
    *("application/msword", "application/rtf", "application/epub"),
    *("application/vnd.openxmlformats", "application/vnd.ms-", "application/vnd.oasis"),
)
_BINARY_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"PK\x03\x04",  # ZIP, and so .docx/.xlsx/.odt/.epub
    b"PK\x05\x06",
    b"\x1f\x8b",  # gzip
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # OLE2: .doc/.xls/.ppt/.msg
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\xfd7zXZ\x00",
    b"\x7fELF",
    b"SQLite format 3\x00",
)
_SNIFF_BYTES = 8192
_HTML_START = re.compile(
    r"\A\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE | re.DOTALL
)


def detect_format(*, filename: str | None, content_type: str | None, data: bytes) -> str:
    """Return "text", "markdown", "html" or "pdf".

    The file name's extension wins, then the declared content type, then the first bytes
    (`%PDF-`, `<html`, `<!doctype html`). A file nothing recognises is plain text unless its
    bytes are clearly binary, which is SOURCE_UNSUPPORTED_FORMAT like a known binary extension.
    """
    extension = _extension(filename)
    if extension in _EXTENSION_FORMATS:
        return _EXTENSION_FORMATS[extension]
    if extension in _BINARY_EXTENSIONS:
        raise ExtractionError(
            SOURCE_UNSUPPORTED_FORMAT,
            f"{extension} files are not supported. {SUPPORTED_FORMATS_HINT}",
        )

    media_type = _media_type(content_type)
    if media_type in _CONTENT_TYPE_FORMATS:
        return _CONTENT_TYPE_FORMATS[media_type]
    if media_type.startswith(_BINARY_CONTENT_TYPES):
        raise ExtractionError(
            SOURCE_UNSUPPORTED_FORMAT,
            f"Files of type {media_type} are not supported. {SUPPORTED_FORMATS_HINT}",
        )
    if media_type.startswith("text/"):
        return "text"

    sample = data[:_SNIFF_BYTES]
    if sample[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if _HTML_START.match(_sniff_text(sample[:1024])):
        return "html"
    if _looks_binary(sample, is_valid_utf8=False):
        raise ExtractionError(
            SOURCE_UNSUPPORTED_FORMAT,
            f"This file looks like binary data in a format that is not supported. "
            f"{SUPPORTED_FORMATS_HINT}",
        )
    return "text"


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    # Browsers on Windows may send a full path; only the last part names the file.
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _sniff_text(sample: bytes) -> str:
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return sample.decode("utf-16", errors="ignore")
    return sample.removeprefix(codecs.BOM_UTF8).decode("latin-1")


# --- Decoding and normalisation ----------------------------------------------------------------

# C0 controls other than tab, newline, form feed and carriage return, plus DEL.
_CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 32), 127])
# Share of control bytes above which valid UTF-8 is still binary (a run of NULs, a raw dump).
# Text with ANSI colour codes stays far below it.
_MAX_CONTROL_SHARE = 0.10
# Invalid UTF-8 is binary well before that: Latin-1 or Shift_JIS text has no controls at all,
# while random bytes are about 11% controls.
_MAX_CONTROL_SHARE_INVALID_UTF8 = 0.03
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_CONTENT_TYPE_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def _looks_binary(data: bytes, *, is_valid_utf8: bool) -> bool:
    if data.startswith(_BINARY_SIGNATURES):
        return True
    if not data:
        return False
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if is_valid_utf8:
        return controls / len(data) > _MAX_CONTROL_SHARE
    return b"\x00" in data or controls / len(data) > _MAX_CONTROL_SHARE_INVALID_UTF8


def _decode(data: bytes, *, declared_charsets: list[str]) -> tuple[str, str]:
    """Bytes to text and the encoding used.

    UTF-8 (with or without a byte-order mark) is decoded strictly, and UTF-16 when it starts
    with a byte-order mark. A charset declared by the upload's content type or an HTML
    `<meta charset>` is only tried when the bytes are not valid UTF-8, because pages that say
    "iso-8859-1" while being UTF-8 are common. A few NUL bytes in otherwise valid text are
    dropped later; many of them, or other control bytes, mean the file is not text.
    """
    binary_error = ExtractionError(
        SOURCE_BINARY_CONTENT,
        "The file looks like binary data, not text. If it is text, save it as UTF-8 and "
        "upload it again.",
    )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ExtractionError(
                SOURCE_INVALID_ENCODING,
                f"The file starts like UTF-16 text but has invalid bytes at offset {exc.start}. "
                "Save it as UTF-8 and upload it again.",
            ) from exc
        if _looks_binary(text.encode("utf-8"), is_valid_utf8=True):
            raise binary_error
        return text, "utf-16"

    bom_length = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom_length:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if _looks_binary(data[:_SNIFF_BYTES], is_valid_utf8=False):
            raise binary_error from exc
        for charset in declared_charsets:
            try:
                return data.decode(charset), charset
            # LookupError: codecs.lookup() also knows bytes-to-bytes codecs such as "zlib".
            except (UnicodeDecodeError, LookupError):
                continue
        offset = bom_length + exc.start
        raise ExtractionError(
            SOURCE_INVALID_ENCODING,
            f"The file is not valid UTF-8: byte 0x{data[offset]:02X} at offset {offset} cannot "
            "be decoded. Save the file as UTF-8 and upload it again.",
        ) from exc
    if _looks_binary(data, is_valid_utf8=True):
        raise binary_error
    return text, "utf-8"


def _declared_charsets(*, content_type: str | None, data: bytes, source_format: str) -> list[str]:
    names = []
    if match := _CONTENT_TYPE_CHARSET.search(content_type or ""):
        names.append(match.group(1))
    if source_format == "html" and (match := _META_CHARSET.search(data[:_SNIFF_BYTES])):
        names.append(match.group(1).decode("ascii"))
    charsets = []
    for name in names:
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            continue
        # Browsers read Latin-1 and ASCII labels as Windows-1252, and so do authors' editors.
        codec = "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec
        if codec not in ("utf-8", *charsets):
            charsets.append(codec)
    return charsets


# --- Public entry points -----------------------------------------------------------------------


def extract(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> ExtractedDocument:
    """Extract the sections of an uploaded file; raises ExtractionError."""
    source_format = detect_format(filename=filename, content_type=content_type, data=data)
    if source_format == "pdf":
        return _pdf_document(data)
    charsets = _declared_charsets(content_type=content_type, data=data, source_format=source_format)
    text, encoding = _decode(data, declared_charsets=charsets)
    return _text_format_document(
        normalize_text(text), source_format=source_format, metadata={"encoding": encoding}
    )


def extract_text(text: str, *, format: str = "text") -> ExtractedDocument:
    """Extract the sections of text given directly (API, service calls) as text/markdown/html."""
    if format not in TEXT_FORMATS:
        raise ExtractionError(
            SOURCE_UNSUPPORTED_FORMAT,
            f"Text can be given as {', '.join(TEXT_FORMATS)}, not {format!r}.",
        )
    return _text_format_document(normalize_text(text), source_format=format, metadata={})


def _text_format_document(text: str, *, source_format: str, metadata: dict) -> ExtractedDocument:
    if source_format == "markdown":
        sections, title = _markdown_sections(text)
    elif source_format == "html":
        sections, title = _html_sections(text)
    else:
        body = _trim(text)
        sections = [Section(text=body)] if body else []
        first_line = body.partition("\n")[0].strip()
        title = first_line if len(first_line) <= MAX_TEXT_TITLE_LENGTH else None
    if not sections:
        raise ExtractionError(
            SOURCE_EMPTY, "The source is empty or only whitespace; there is no text to index."
        )
    return ExtractedDocument(
        sections=sections, format=source_format, title=title or None, metadata=metadata
    )


# --- Sections under headings (Markdown and HTML) -----------------------------------------------

_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")


def _trim(text: str) -> str:
    """Drop blank lines before and whitespace after; keep the first line's indentation."""
    return _LEADING_BLANK_LINES.sub("", text.rstrip(), count=1)


class _SectionBuilder:
    """Sections whose heading_path is the stack of headings enclosing them."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.title: str | None = None
        self._headings: list[tuple[int, str]] = []

    def add(self, text: str) -> None:
        """A heading with no body of its own yields no section."""
        body = _trim(text)
        if body:
            path = tuple(heading for _, heading in self._headings)
            self.sections.append(Section(text=body, heading_path=path))

    def open_heading(self, level: int, heading: str) -> None:
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        self._headings.append((level, heading))
        if level == 1 and self.title is None:
            self.title = heading


# --- Markdown ----------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*$")
# Lines that start a list item, quote or table: an underline after them is not a heading.
_BLOCK_START = re.compile(r" {0,3}(?:(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)|[>|])")
_FRONT_MATTER_END = ("---", "...")


def _markdown_sections(text: str) -> tuple[list[Section], str | None]:
    """Split on ATX (`#`) and Setext (`===`/`---` underline) headings, CommonMark-style.

    Lines inside fenced code blocks and a leading YAML front-matter block are never headings.
    Body text is kept as written; heading lines move into heading_path.
    """
    builder = _SectionBuilder()
    lines = text.split("\n")
    body: list[str] = []
    # Index in `body` of the first line of the paragraph being read: a Setext underline turns
    # body[paragraph_start:] into a heading. Tracked instead of searched for, to stay linear.
    paragraph_start = 0
    fence: str | None = None
    front_matter_end = _front_matter_end(lines)

    for number, line in enumerate(lines):
        if fence is not None:
            body.append(line)
            if _closes_fence(line, fence):
                fence = None
                paragraph_start = len(body)
            continue
        if number <= front_matter_end:
            body.append(line)
            paragraph_start = len(body)
            continue

        # Most lines are body text; only look closer at those whose first character could
        # start a fence or a heading.
        marker = line.lstrip(" ")[:1]
        opening = _FENCE_OPEN.match(line) if marker in ("`", "~") else None
        # A backtick fence's info string may not contain backticks (``` `x` ``` is inline code).
        if opening and not (marker == "`" and "`" in line[opening.end() :]):
            fence = opening.group(1)
            body.append(line)
            continue

        atx = _ATX_HEADING.match(line) if marker == "#" else None
        heading = _ATX_CLOSING.sub("", atx.group(2) or "").strip() if atx else ""
        if atx and heading:
            builder.add("\n".join(body))
            body, paragraph_start = [], 0
            builder.open_heading(len(atx.group(1)), heading)
            continue

        underline = _SETEXT_UNDERLINE.match(line) if marker in ("=", "-") else None
        if underline and _is_setext_paragraph(body[paragraph_start:]):
            heading = " ".join(part.strip() for part in body[paragraph_start:])
            builder.add("\n".join(body[:paragraph_start]))
            body, paragraph_start = [], 0
            builder.open_heading(1 if marker == "=" else 2, heading)
            continue

        body.append(line)
        if underline or not line.strip():
            paragraph_start = len(body)

    builder.add("\n".join(body))
    return builder.sections, builder.title


def _front_matter_end(lines: list[str]) -> int:
    """Index of the line closing a leading `---` YAML block, or -1 when there is none."""
    if not lines or lines[0].rstrip() != "---":
        return -1
    for number in range(1, len(lines)):
        if lines[number].rstrip() in _FRONT_MATTER_END:
            return number
    return -1


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(fence)
        and stripped == fence[0] * len(stripped)
    )


def _is_setext_paragraph(paragraph: list[str]) -> bool:
    if not paragraph or paragraph[0].startswith(("    ", "\t")):
        return False
    return not any(_BLOCK_START.match(line) for line in paragraph)


# --- HTML --------------------------------------------------------------------------------------

_INVISIBLE_TAGS = ["script", "style", "noscript", "template", "svg", "iframe", "head"]
_CHROME_TAGS = ["nav", "header", "footer", "aside", "form"]
_NOTABLE_TAGS = ("title", "main", "article", *_INVISIBLE_TAGS, *_CHROME_TAGS)
_HEADING_LEVELS = {f"h{level}": level for level in range(1, 7)}
# Blocks set off by a blank line; the other blocks start a new line.
_PARAGRAPH_BLOCKS = frozenset(
    {
        *("p", "pre", "blockquote", "table", "ul", "ol", "dl", "hr", "figure", "section"),
        *("article", "main", "header", "footer", "details", "address", "fieldset", "nav"),
        *("aside", "form"),
    }
)
_LINE_BLOCKS = frozenset(
    {"div", "li", "tr", "dt", "dd", "caption", "figcaption", "summary", "legend", "body"}
)
_WHITESPACE = re.compile(r"\s+")
_TRAILING_SPACES = re.compile(r"[ \t]+\n")


def _html_sections(text: str) -> tuple[list[Section], str | None]:
    """Readable text of the page's main content, split on h1–h6.

    Invisible elements (scripts, styles, templates, the head…) always go. When the page marks
    its content with <main>, [role=main] or <article>, that element is the root and navigation,
    asides, forms and page-level headers/footers go too; a <header> inside an article or section
    stays, because it usually holds the article's <h1>.
    """
    soup = BeautifulSoup(text, "html.parser")
    # One walk over the tree instead of a find_all() per rule: bs4's matching is the slow part
    # on large pages.
    found: dict[str, list[Tag]] = {name: [] for name in _NOTABLE_TAGS}
    hidden, role_main = [], []
    for node in soup.descendants:
        if isinstance(node, Tag):
            if node.name in found:
                found[node.name].append(node)
            if "hidden" in node.attrs:
                hidden.append(node)
            if node.get("role") == "main":
                role_main.append(node)

    title_tag = next((tag for tag in found["title"] if not tag.find_parent("svg")), None)
    title = _collapse(title_tag.get_text()) if title_tag else ""

    for tag in [*(tag for name in _INVISIBLE_TAGS for tag in found[name]), *hidden]:
        _drop(tag)

    articles = [tag for tag in found["article"] if not tag.decomposed]
    content = next((tag for tag in [*found["main"], *role_main] if not tag.decomposed), None)
    if content is None and len(articles) == 1:
        content = articles[0]
    if content is not None or articles:
        for tag in (tag for name in _CHROME_TAGS for tag in found[name]):
            if tag.decomposed:
                continue
            is_section_header = tag.name in ("header", "footer") and tag.find_parent(
                ["article", "section"]
            )
            if not is_section_header:
                _drop(tag)
    root = content or soup.body or soup

    writer = _HtmlTextWriter()
    writer.walk(root)
    return writer.builder.sections, title or writer.builder.title


def _drop(tag: Tag) -> None:
    # Nested matches are listed too; the outer one may already be gone.
    if not tag.decomposed:
        tag.decompose()


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


class _HtmlTextWriter:
    """Renders a tree as text, like a browser's "copy as text", section by section.

    Separators are requested and only written before the next text, so empty elements and
    runs of closing tags never produce stray blank lines or spaces.
    """

    def __init__(self) -> None:
        self.builder = _SectionBuilder()
        self._parts: list[str] = []
        self._newlines = 0
        self._is_cell_pending = False
        self._is_space_pending = False
        self._pre_depth = 0
        self._is_pre_start = False
        self._lists: list[int | None] = []  # next number of each open <ol>, None for <ul>
        # The "- " or "3. " of an <li>, written with its first text so that <li><p>… stays on
        # one line.
        self._list_marker: str | None = None

    def walk(self, root: Tag) -> None:
        # Iterative on purpose: generated pages nest deeper than Python's recursion limit.
        pending: list[tuple[object, bool]] = [(root, False)]
        while pending:
            node, is_closing = pending.pop()
            if isinstance(node, NavigableString):
                if not isinstance(node, PreformattedString):  # comments, doctype, CDATA
                    self._text(str(node))
            elif isinstance(node, Tag):
                if is_closing:
                    self._close(node)
                elif node.name in _HEADING_LEVELS:
                    self._heading(node)
                else:
                    self._open(node)
                    pending.append((node, True))
                    pending.extend((child, False) for child in reversed(node.contents))
        self._flush()

    def _open(self, tag: Tag) -> None:
        name = tag.name
        if name == "br":
            self._newlines = min(2, self._newlines + 1)
        elif name in ("ul", "ol"):
            self._block(1 if self._lists else 2)
            self._lists.append(_list_start(tag) if name == "ol" else None)
        elif name == "li":
            self._block(1)
            self._list_marker = self._next_list_marker()
        elif name in ("td", "th"):
            self._is_cell_pending = True
        elif name == "pre":
            self._block(2)
            self._pre_depth += 1
            self._is_pre_start = True
        elif name in _PARAGRAPH_BLOCKS:
            self._block(2)
        elif name in _LINE_BLOCKS:
            self._block(1)

    def _close(self, tag: Tag) -> None:
        name = tag.name
        if name in ("ul", "ol"):
            self._lists.pop()
            self._block(1 if self._lists else 2)
        elif name == "pre":
            self._pre_depth -= 1
            self._block(2)
        elif name in _PARAGRAPH_BLOCKS:
            self._block(2)
        elif name in _LINE_BLOCKS:
            self._block(1)

    def _heading(self, tag: Tag) -> None:
        heading = _collapse(tag.get_text())
        if not heading:
            return
        self._flush()
        self.builder.open_heading(_HEADING_LEVELS[tag.name], heading)

    def _next_list_marker(self) -> str:
        indent = "  " * (len(self._lists) - 1)
        if self._lists and self._lists[-1] is not None:
            number = self._lists[-1]
            self._lists[-1] = number + 1
            return f"{indent}{number}. "
        return f"{indent}- "

    def _text(self, text: str) -> None:
        if self._pre_depth:
            if self._is_pre_start:
                # Like browsers, ignore the newline right after <pre>.
                text = text.removeprefix("\n")
                self._is_pre_start = False
            if text:
                self._write(text)
            return
        collapsed = _WHITESPACE.sub(" ", text)
        if collapsed.startswith(" "):
            self._is_space_pending = True
        words = collapsed.strip()
        if words:
            self._write(words)
            self._is_space_pending = collapsed.endswith(" ")

    def _block(self, newlines: int) -> None:
        if self._list_marker is None:
            self._newlines = max(self._newlines, newlines)

    def _write(self, text: str) -> None:
        if self._parts:
            if self._newlines:
                self._parts.append("\n" * self._newlines)
            elif self._is_cell_pending:
                self._parts.append(" | ")
            elif self._is_space_pending and not self._parts[-1][-1:].isspace():
                self._parts.append(" ")
        self._newlines = 0
        self._is_cell_pending = self._is_space_pending = False
        if self._list_marker is not None:
            self._parts.append(self._list_marker)
            self._list_marker = None
        self._parts.append(text)

    def _flush(self) -> None:
        text = "".join(self._parts)
        self.builder.add(_TRAILING_SPACES.sub("\n", text))
        self._parts = []
        self._newlines = 0
        self._is_cell_pending = self._is_space_pending = False
        self._list_marker = None


def _list_start(tag: Tag) -> int:
    try:
        return int(str(tag.get("start", "1")))
    except ValueError:
        return 1


# --- PDF ---------------------------------------------------------------------------------------


def _pdf_document(data: bytes) -> ExtractedDocument:
    """One section per page that has text, numbered from 1.

    An encrypted PDF is opened when its user password is empty (owner-password-only PDFs that
    merely restrict printing or copying); otherwise it is SOURCE_ENCRYPTED_PDF.
    """
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(
                SOURCE_ENCRYPTED_PDF,
                "The PDF is encrypted; remove the password and upload it again.",
            )
        page_texts = [page.extract_text() or "" for page in reader.pages]
    except ExtractionError:
        raise
    except DependencyError as exc:
        # AES needs the optional `cryptography` package, RC4 does not.
        raise ExtractionError(
            SOURCE_ENCRYPTED_PDF,
            "The PDF uses an encryption this server cannot open; save an unencrypted copy and "
            "upload it again.",
        ) from exc
    except Exception as exc:
        # Damaged files make pypdf raise far more than its own PdfReadError: KeyError,
        # ValueError, zlib.error, RecursionError…
        reason = str(exc).strip() or type(exc).__name__
        raise ExtractionError(
            SOURCE_BROKEN_FILE,
            f"The PDF could not be read ({reason[:200]}). It may be damaged or incomplete; "
            "export it again and upload the new file.",
        ) from exc

    sections = []
    for number, page_text in enumerate(page_texts, start=1):
        body = _trim(normalize_text(page_text))
        if body:
            sections.append(Section(text=body, page=number))
    if not sections:
        raise ExtractionError(
            SOURCE_EMPTY,
            "The PDF has no extractable text; it may contain only scanned images, and OCR is "
            "not supported. Upload a PDF with a text layer.",
        )
    return ExtractedDocument(
        sections=sections,
        format="pdf",
        title=_pdf_title(reader),
        metadata={"pages": len(page_texts)},
    )


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        # A damaged Info dictionary should not cost the text that was read fine.
        return None
    if not title:
        return None
    return _collapse(normalize_text(str(title))) or None
