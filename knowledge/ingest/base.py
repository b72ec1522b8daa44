"""What the ingest modules share: plain data passed between extraction (parsers.py), chunking
(chunking.py) and ingestion, the result of an ingest, and its error."""

from dataclasses import dataclass, field
from typing import Literal

from core.errors import ApiError
from knowledge.models import KnowledgeSource


@dataclass(frozen=True)
class Section:
    """A run of text that shares one location: a Markdown/HTML heading path or a PDF page.
    Chunks never span two sections."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class ExtractedDocument:
    sections: list[Section]
    format: str  # "text", "markdown", "html", "pdf"
    title: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is stored: text, its token count and where it came from."""

    content: str
    token_count: int
    location: dict  # heading_path (list), page (int), char_start/char_end within the section
    token_counter: str = ""  # the name of the counter behind token_count; "" when unknown


Outcome = Literal["created", "updated", "unchanged", "failed"]


class IngestError(ApiError):
    """Input the caller must fix (unknown source type, empty title…)."""


@dataclass(frozen=True)
class IngestResult:
    source: KnowledgeSource
    outcome: Outcome
    chunks: int = 0
    tokens: int = 0
    embeddings_kept: int = 0
    error_code: str = ""
    error_message: str = ""
