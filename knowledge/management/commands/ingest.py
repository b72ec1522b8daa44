import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from knowledge.ingest.base import IngestError
from knowledge.ingest.files import IngestSummary, files_ingest, folder_sync, iter_files
from knowledge.models import SourceType


def parse_meta(pairs: list[str]) -> dict:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--meta expects key=value, got {pair!r}")
        metadata[key.strip()] = value.strip()
    return metadata


class Command(BaseCommand):
    help = (
        "Ingest files and folders (text, Markdown, HTML, PDF) into the knowledge base, or mirror "
        "a folder with --sync (new/changed files ingested, removed files deleted)."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", type=Path)
        parser.add_argument(
            "--type", dest="source_type", default=SourceType.DOCUMENT, choices=SourceType.values
        )
        parser.add_argument("--title", help="Title for a single file (default: from the document).")
        parser.add_argument(
            "--meta", action="append", default=[], help="key=value metadata; repeatable."
        )
        parser.add_argument("--sync", type=Path, metavar="FOLDER", help="Mirror this folder.")

    def handle(self, *args, paths, source_type, title, meta, sync, **options):
        metadata = parse_meta(meta)
        if not paths and not sync:
            raise CommandError("Give files/folders to ingest, or --sync FOLDER.")
        if title and (sync or len(paths) != 1 or paths[0].is_dir()):
            raise CommandError("--title applies to a single file only.")
        try:
            total = len(list(iter_files([sync] if sync else paths)))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        progress = Progress(self.stdout, total)
        try:
            if sync:
                summary = folder_sync(
                    sync, source_type=source_type, metadata=metadata, on_file=progress
                )
            else:
                summary = files_ingest(
                    paths, source_type=source_type, title=title, metadata=metadata, on_file=progress
                )
        except (IngestError, NotADirectoryError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from None
        progress.finish()
        self._report(summary, synced=bool(sync))

    def _report(self, summary: IngestSummary, *, synced: bool) -> None:
        out = self.stdout
        out.write(
            f"Sources: {summary.created} created, {summary.updated} updated, "
            f"{summary.unchanged} unchanged, {summary.failed} failed"
            + (f", {summary.removed} removed" if synced else "")
        )
        out.write(
            f"Chunks: {summary.chunks} written ({summary.embeddings_kept} kept their embeddings), "
            f"{summary.tokens} tokens"
        )
        if synced:
            out.write(
                f"Index build: documents={summary.documents} entries={summary.entries} "
                f"duration={summary.duration * 1000:.0f} ms"
            )
        else:
            out.write(f"Duration: {summary.duration:.2f} s")
        for path, code, message in summary.failures:
            self.stderr.write(f"FAILED {path}: [{code}] {message}")


class Progress:
    """A one-line progress bar on a terminal; one line per file otherwise."""

    def __init__(self, stream, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.is_tty = hasattr(stream, "isatty") and stream.isatty() or sys.stdout.isatty()

    def __call__(self, path: Path, result) -> None:
        self.done += 1
        if self.is_tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {path.name[:40]:<40}",
                ending="",
            )
            self.stream.flush()
        else:
            self.stream.write(f"[{self.done}/{self.total}] {result.outcome:<9} {path}")

    def finish(self) -> None:
        if self.is_tty and self.total:
            self.stream.write("")
