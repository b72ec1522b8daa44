"""Ingesting files and folders from disk, and mirroring a folder: files gone from it are removed
from knowledge too (`manage.py ingest --sync`, see the README)."""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from knowledge.ingest.base import IngestResult
from knowledge.ingest.ingestion import source_ingest_file
from knowledge.models import KnowledgeChunk, KnowledgeSource

SUPPORTED_SUFFIXES = {".txt", ".text", ".log", ".md", ".markdown", ".html", ".htm", ".pdf"}
FILE_URI_PREFIX = "file://"


@dataclass
class IngestSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    chunks: int = 0
    tokens: int = 0
    embeddings_kept: int = 0
    duration: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (path, code, message)

    def add(self, path: Path, result: IngestResult) -> None:
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        self.chunks += result.chunks
        self.tokens += result.tokens
        self.embeddings_kept += result.embeddings_kept
        if result.outcome == "failed":
            self.failures.append((str(path), result.error_code, result.error_message))

    @property
    def documents(self) -> int:
        """Documents now in the knowledge base from this run (created, updated or unchanged)."""
        return self.created + self.updated + self.unchanged

    @property
    def entries(self) -> int:
        """Chunks stored by this run."""
        return self.chunks


def file_uri(path: Path) -> str:
    return FILE_URI_PREFIX + str(path.resolve())


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Supported files under the given files/folders, in a stable order; hidden files skipped."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if child.is_file() and not any(part.startswith(".") for part in relative.parts):
                    if child.suffix.lower() in SUPPORTED_SUFFIXES:
                        yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")


def files_ingest(
    paths: Iterable[Path],
    *,
    source_type: str,
    title: str | None = None,
    metadata: dict | None = None,
    on_file: Callable[[Path, IngestResult], None] | None = None,
) -> IngestSummary:
    """Ingest files (folders are walked). Each file is its own source, identified by its path."""
    started = time.monotonic()
    summary = IngestSummary()
    for path in iter_files(paths):
        result = source_ingest_file(
            data=path.read_bytes(),
            filename=path.name,
            source_type=source_type,
            title=title,
            uri=file_uri(path),
            metadata=metadata,
        )
        summary.add(path, result)
        if on_file:
            on_file(path, result)
    summary.duration = time.monotonic() - started
    return summary


def folder_sync(
    folder: Path,
    *,
    source_type: str,
    metadata: dict | None = None,
    on_file: Callable[[Path, IngestResult], None] | None = None,
) -> IngestSummary:
    """Mirror a folder: new and changed files are ingested, unchanged ones skipped, and sources
    of files that are gone from the folder are removed with their chunks."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"Not a folder: {folder}")
    started = time.monotonic()
    summary = files_ingest([folder], source_type=source_type, metadata=metadata, on_file=on_file)
    present = {file_uri(path) for path in iter_files([folder])}
    prefix = FILE_URI_PREFIX + str(folder) + "/"
    gone = KnowledgeSource.objects.filter(uri__startswith=prefix).exclude(uri__in=present)
    with transaction.atomic():
        gone_ids = list(gone.values_list("pk", flat=True))
        KnowledgeChunk.objects.filter(source_id__in=gone_ids).delete()
        summary.removed = (
            KnowledgeSource.objects.filter(pk__in=gone_ids)
            .delete()[1]
            .get(KnowledgeSource._meta.label, 0)
        )
    summary.duration = time.monotonic() - started
    return summary
