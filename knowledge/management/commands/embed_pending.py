import signal
import sys
import threading

from django.core.management.base import BaseCommand

from knowledge.embed.pipeline import BatchReport, embedding_run
from knowledge.models import EmbeddingStatus, KnowledgeChunk


class Command(BaseCommand):
    help = "Embed pending chunks in the foreground (same code as the background worker)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Process a single batch and stop.")
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument("--max-seconds", type=float, default=None)

    def handle(
        self, *args, once: bool, concurrency: int | None, max_seconds: float | None, **options
    ):
        total = KnowledgeChunk.objects.filter(embedding_status=EmbeddingStatus.PENDING).count()
        done = 0
        is_tty = sys.stdout.isatty()

        def on_batch(batch: BatchReport) -> None:
            nonlocal done
            done += batch.embedded + batch.dead
            if is_tty and total:
                filled = int(30 * min(done, total) / total)
                self.stdout.write(
                    f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", ending=""
                )
                self.stdout.flush()

        # Ctrl-C: batches in flight finish and are written back, then the command exits. A second
        # Ctrl-C stops at once; the rows it held come back when their lease expires.
        stop = threading.Event()

        def request_stop(signum, frame):
            if stop.is_set():
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.stderr.write("\nFinishing the batches in flight (Ctrl-C again to quit now)…")
            stop.set()

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            report = embedding_run(
                max_seconds=max_seconds,
                concurrency=1 if once else concurrency,
                on_batch=on_batch,
                max_batches=1 if once else None,
                stop=stop,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        if is_tty and total:
            self.stdout.write("")
        t = report.totals
        self.stdout.write(
            f"Embedded {t.embedded}, failed {t.failed} (dead letters {t.dead}), stale {t.stale}, "
            f"rescheduled {t.rescheduled}; {t.requests} requests, {t.retries} retries, "
            f"{report.seconds:.1f} s."
        )
        if t.paused:
            self.stderr.write(f"Pipeline paused: {t.paused}. See the index dashboard.")
        remaining = KnowledgeChunk.objects.filter(embedding_status=EmbeddingStatus.PENDING).count()
        self.stdout.write(f"Pending now: {remaining}.")
