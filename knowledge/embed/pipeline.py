"""The embedding processor: fills `embedding` for every embeddable row, never losing or
duplicating work.

Each batch runs in three steps, the middle one outside any transaction so that no row lock
or snapshot is held while the provider is called (seconds, or minutes with retries):

1. **Claim** (Tx1): `SELECT … FOR UPDATE SKIP LOCKED` picks due rows, stamps them with a lease
   (`embedding_claimed_until`, unique per claim) and counts the attempt, then commits — so a
   worker that dies during the API call still used up an attempt. When its lease ends, the next
   claim records that lost attempt like a failed one (error entry, backoff, dead letter after
   the limit) and the rows come back after their backoff.
2. **Embed** outside any transaction: the provider is called in planned batches, with retries,
   while `LeaseKeeper` renews the lease, so a slow batch is never taken over by another worker.
3. **Write back** (Tx2): vectors are stored only where the row still has the text hash we
   embedded *and* still carries our lease; anything else (text edited meanwhile, lease taken over
   by another worker) is discarded and the row stays pending.

"Nothing lost" rests on these columns, not on django-q2 (which is at-least-once and may run a
task twice): running the processor twice at once is safe.
"""

import logging
import random
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from django.utils import timezone

from core.health import database_unreachable
from knowledge.embed.base import (
    EmbeddingProvider,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    RetryLaterError,
)
from knowledge.embed.batching import fit_input, plan_batches
from knowledge.embed.enqueue import embedding_enqueue
from knowledge.embed.queue import QUEUE_TABLE
from knowledge.embed.retries import embed_with_retries
from knowledge.embed.spaces import (
    VectorSpace,
    embedding_provider_for,
    embedding_switch_finish,
    halfvec_literal,
    space_record,
    space_state_locked,
)
from knowledge.ingest.chunk_copy import HalfvecBinary
from knowledge.models import (
    EmbeddableModel,
    EmbeddingPipelineState,
    EmbeddingStatus,
    KnowledgeChunk,
    embeddable_models,
    embedding_requeue_fields,
)
from knowledge.tokens import TokenCounter, get_token_counter

logger = logging.getLogger(__name__)
T = TypeVar("T")
ERROR_HISTORY = 20  # error entries kept per row
# Pause reasons for a provider that cannot work until someone acts (shown on the dashboard).
BLOCKED_QUOTA = "blocked: quota"
BLOCKED_CONFIG = "blocked: provider configuration"


@dataclass(frozen=True)
class ClaimedRow:
    pk: int
    text: str
    text_hash: str
    attempts: int
    token_count: int | None = None  # stored with the text, if the model keeps it
    token_counter: str = ""  # the counter that produced token_count


def input_token_counts(
    rows: list[ClaimedRow], texts: list[str], counter: TokenCounter
) -> list[int]:
    """Token counts of the texts to send: the stored count when the row's text goes unchanged
    and was counted by the same counter, else a fresh count."""
    return [
        row.token_count
        if row.token_count is not None and row.token_counter == counter.name and text == row.text
        else counter.count(text)
        for row, text in zip(rows, texts, strict=True)
    ]


@dataclass
class BatchReport:
    claimed: int = 0
    embedded: int = 0
    stale: int = 0
    failed: int = 0
    dead: int = 0
    rescheduled: int = 0
    requests: int = 0
    retries: int = 0
    paused: str = ""

    def add(self, other: "BatchReport") -> None:
        for name in (
            "claimed",
            "embedded",
            "stale",
            "failed",
            "dead",
            "rescheduled",
            "requests",
            "retries",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.paused = other.paused or self.paused


def _table(model: type[EmbeddableModel]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def embedding_claim(
    *, model: type[EmbeddableModel], limit: int, lease_seconds: int
) -> tuple[list[ClaimedRow], object]:
    """Tx1: claim up to `limit` due rows with a fresh lease; returns the rows and the lease stamp."""
    _lost_attempts_record(model=model, limit=limit)
    table = _table(model)
    text_field = model.EMBEDDING_TEXT_FIELD
    hash_field = model.EMBEDDING_HASH_FIELD
    tokens = (
        "row.{}, row.{}".format(*model.EMBEDDING_TOKEN_FIELDS)
        if model.EMBEDDING_TOKEN_FIELDS
        else "NULL, ''"
    )
    # The lease doubles as the claim token: a microsecond timestamp plus a random offset, so two
    # claims practically never share it.
    lease = timezone.now() + timedelta(seconds=lease_seconds, microseconds=random.randrange(1000))
    max_attempts = settings.KIOKU_EMBEDDING_MAX_ATTEMPTS
    with transaction.atomic(), connection.cursor() as cursor:
        # Pending rows are found through the queue table (knowledge/embed/queue.py); the
        # conditions on the row itself are checked again once it is locked. A row whose lease
        # ended unanswered is not claimed here: `_lost_attempts_record` first counts that
        # attempt and backs the row off.
        cursor.execute(
            f"""
            WITH claimed AS (
                SELECT row.id FROM {QUEUE_TABLE} AS due JOIN {table} AS row ON row.id = due.row_id
                WHERE due.table_name = %s AND due.due_at <= now()
                  AND row.embedding_status = %s AND row.embedding_next_attempt_at <= now()
                  AND row.embedding_claimed_until IS NULL
                  AND row.embedding_attempts < %s
                ORDER BY due.due_at, due.row_id
                LIMIT %s
                FOR UPDATE OF row SKIP LOCKED
            )
            UPDATE {table} AS row SET embedding_claimed_until = %s,
                embedding_attempts = row.embedding_attempts + 1
            FROM claimed WHERE row.id = claimed.id
            RETURNING row.id, row.{text_field}, row.{hash_field}, row.embedding_attempts,
                {tokens}
            """,
            [model._meta.db_table, EmbeddingStatus.PENDING, max_attempts, limit, lease],
        )
        rows = [ClaimedRow(*values) for values in cursor.fetchall()]
        if rows:  # a claimed row is not due again before its lease ends
            cursor.execute(
                f"UPDATE {QUEUE_TABLE} SET due_at = %s WHERE table_name = %s AND row_id = ANY(%s)",
                [lease, model._meta.db_table, [row.pk for row in rows]],
            )
    rows.sort(key=lambda row: row.pk)
    return rows, lease


def embedding_process_batch(
    *,
    model: type[EmbeddableModel] = KnowledgeChunk,
    provider: EmbeddingProvider | None = None,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchReport:
    """Claim one batch, embed it and write the results back. Safe to run concurrently.

    Vectors go to the space being filled: the target of a model switch, else the active one
    (knowledge/embed/spaces.py); the configured model only becomes that space through a switch.
    """
    report = BatchReport()
    state = EmbeddingPipelineState.load()
    if state.is_paused():
        report.paused = state.paused_reason
        return report
    space = space_record().writing
    if provider is None:
        provider = _provider_or_pause(space, report)
        if provider is None:
            return report
    rows, lease = _on_live_connection(
        lambda: embedding_claim(
            model=model,
            limit=limit or settings.KIOKU_EMBEDDING_CLAIM_ROWS,
            lease_seconds=settings.KIOKU_EMBEDDING_LEASE_SECONDS,
        )
    )
    report.claimed = len(rows)
    if not rows:
        return report
    keeper = LeaseKeeper(
        model=model, rows=rows, lease=lease, seconds=settings.KIOKU_EMBEDDING_LEASE_SECONDS
    )
    try:
        vectors, errors = _embed_claimed(
            model, rows, keeper, provider=provider, report=report, sleep=sleep
        )
    finally:
        lease = keeper.stop()
    _store_results(model, rows, lease, vectors, errors, space=space, report=report)
    return report


class LeaseKeeper:
    """Keeps a batch's lease from ending while its worker is alive and waiting on the provider
    (slow answers, retries): every third of the lease it is pushed forward, from a thread with a
    connection of its own. Without it a batch that outlived its lease was claimed again by
    another worker and embedded twice. A worker that dies stops renewing, so its rows still come
    back one lease later. The lease is also the claim's token: `stop()` ends the renewals and
    returns the current one for the write-back."""

    def __init__(
        self,
        *,
        model: type[EmbeddableModel],
        rows: list[ClaimedRow],
        lease: datetime,
        seconds: float,
    ) -> None:
        self.model = model
        self.ids = [row.pk for row in rows]
        self.lease = lease
        self.seconds = seconds
        self._stopped = threading.Event()
        # Inside a caller's transaction the claim is not committed: another connection could
        # neither see nor renew it (and would wait on its row locks).
        self._thread = (
            None
            if connection.in_atomic_block
            else threading.Thread(target=self._run, name="embedding-lease", daemon=True)
        )
        if self._thread is not None:
            self._thread.start()

    def stop(self) -> datetime:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        return self.lease

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self.seconds / 3):
                try:
                    self.lease = _on_live_connection(self._renew)
                except (OperationalError, InterfaceError):
                    logger.warning("Could not renew an embedding lease: database unreachable.")
        finally:
            connection.close()

    def _renew(self) -> datetime:
        lease = timezone.now() + timedelta(
            seconds=self.seconds, microseconds=random.randrange(1000)
        )
        table = self.model._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE {_table(self.model)} SET embedding_claimed_until = %s
                WHERE id = ANY(%s) AND embedding_claimed_until = %s RETURNING id
                """,
                [lease, self.ids, self.lease],
            )
            kept = [pk for (pk,) in cursor.fetchall()]
            cursor.execute(
                f"UPDATE {QUEUE_TABLE} SET due_at = %s WHERE table_name = %s AND row_id = ANY(%s)",
                [lease, table, kept],
            )
        return lease


def _provider_or_pause(space: VectorSpace, report: BatchReport) -> EmbeddingProvider | None:
    """The provider of the space being filled; None, with the pipeline paused, when its
    configuration cannot work (retrying each row would only burn their attempts)."""
    try:
        return embedding_provider_for(space)
    except ProviderConfigError as exc:
        pipeline_pause(reason=BLOCKED_CONFIG, error=exc.message)
        report.paused = BLOCKED_CONFIG
        return None


def _request_plan(
    rows: list[ClaimedRow], provider: EmbeddingProvider
) -> tuple[list[str], list[int], list[list[int]]]:
    """The texts to send (fitted to the provider's input limit), their token counts, and the
    requests they go in (lists of positions in `rows`)."""
    counter = get_token_counter()
    texts = [fit_input(row.text, limits=provider.limits, counter=counter) for row in rows]
    limits = provider.limits
    if settings.KIOKU_EMBEDDING_TPM and not provider.is_offline:
        # Under a tokens-per-minute limit, smaller requests keep the flow even (no minute-sized
        # bursts followed by long waits).
        limits = replace(
            limits,
            max_request_tokens=min(limits.max_request_tokens, settings.KIOKU_EMBEDDING_TPM // 20),
        )
    token_counts = input_token_counts(rows, texts, counter)
    return texts, token_counts, plan_batches(token_counts, limits=limits)


def _embed_claimed(
    model: type[EmbeddableModel],
    rows: list[ClaimedRow],
    keeper: LeaseKeeper,
    *,
    provider: EmbeddingProvider,
    report: BatchReport,
    sleep: Callable[[float], None],
) -> tuple[dict[int, Sequence[float]], dict[int, str]]:
    """Step 2, outside any transaction: the vectors and the error messages, by position in
    `rows`. A blocked provider (quota, configuration) pauses the pipeline and a Retry-After stops
    the batch; either way the rows not yet embedded are released without burning the attempt."""
    texts, token_counts, batches = _request_plan(rows, provider)
    vectors: dict[int, Sequence[float]] = {}
    errors: dict[int, str] = {}
    for position, batch in enumerate(batches):
        try:
            outcome = embed_with_retries(
                provider,
                [texts[i] for i in batch],
                token_counts=[token_counts[i] for i in batch],
                sleep=sleep,
            )
        except (QuotaExceededError, ProviderConfigError) as exc:
            reason = BLOCKED_QUOTA if isinstance(exc, QuotaExceededError) else BLOCKED_CONFIG
            pipeline_pause(reason=reason, error=exc.message)
            report.paused = reason
            settled = set(vectors) | set(errors)
            _release(model, rows, keeper.stop(), settled, delay=0)
            report.rescheduled += len(rows) - len(settled)
            break
        except RetryLaterError as exc:
            remaining = {i for later in batches[position:] for i in later}
            settled = set(range(len(rows))) - remaining
            _release(model, rows, keeper.stop(), settled, delay=exc.retry_after or 60)
            report.rescheduled += len(remaining)
            break
        except ProviderError as exc:  # transient errors that outlived their retries
            for i in batch:
                errors[i] = exc.message
            report.requests += 1
            continue
        report.requests += outcome.requests
        report.retries += outcome.retries
        for offset, vector in enumerate(outcome.vectors):
            if vector is not None:
                vectors[batch[offset]] = vector
        for offset, message in outcome.errors.items():
            errors[batch[offset]] = message
    return vectors, errors


def _store_results(
    model: type[EmbeddableModel],
    rows: list[ClaimedRow],
    lease: datetime,
    vectors: dict[int, Sequence[float]],
    errors: dict[int, str],
    *,
    space: VectorSpace,
    report: BatchReport,
) -> None:
    """Step 3: the vectors written back (Tx2), then each failure counted against its row."""
    written, moved = _on_live_connection(lambda: _write_back(model, rows, lease, vectors, space))
    report.embedded = written
    report.stale = len(vectors) - written - moved
    report.rescheduled += moved
    report.failed, report.dead = _on_live_connection(
        lambda: _record_failures(model, rows, lease, errors)
    )
    _on_live_connection(lambda: model.embedding_batch_done([row.pk for row in rows]))


def _on_live_connection(step: Callable[[], T]) -> T:
    """Run one database step of a batch (a claim, a write-back…); if it failed because the
    connection was lost — the server restarted, an operator ran pg_terminate_backend, a pooler
    dropped it — run it once more on a new connection. Each step is one transaction guarded by
    the lease and the text hash, so a second run is safe. The vectors of a batch are worth the
    retry: they were paid for. Anything else, or a second loss, propagates (rows come back when
    their lease ends)."""
    try:
        return step()
    except (OperationalError, InterfaceError) as exc:
        if connection.in_atomic_block or not database_unreachable(exc):
            raise  # a caller's transaction, or an error of the statement itself
        logger.warning("Database connection lost during an embedding batch; retrying the step.")
        connection.close()
        return step()


def _embedded_sql(space: VectorSpace, vector: str, text_hash: str) -> str:
    """The SET list that stores a vector in `space`'s slot and closes the row's bookkeeping
    (parameters after `vector` and `text_hash`: the model, then the DONE status)."""
    return (
        f"{space.column} = {vector}, embedding_text_hash = {text_hash}, "
        f"{space.model_column} = %s, embedding_status = %s, embedded_at = now(), "
        "embedding_claimed_until = NULL, embedding_last_error = ''"
    )


def _write_back(
    model: type[EmbeddableModel],
    rows: list[ClaimedRow],
    lease: datetime,
    vectors: dict[int, Sequence[float]],
    space: VectorSpace,
) -> tuple[int, int]:
    """Tx2: store vectors where hash and lease still match; release the stale rows. Returns
    (written, released because the space being filled changed meanwhile)."""
    if not vectors:
        return 0, 0
    table = _table(model)
    hash_field = model.EMBEDDING_HASH_FIELD
    indices = sorted(vectors)
    with transaction.atomic(), connection.cursor() as cursor:
        if space_state_locked().writing != space:
            # A switch started, completed or was cancelled while we embedded: these vectors
            # belong to no slot now. Give the rows back without burning the attempt.
            _release(model, rows, lease, keep=(), delay=0)
            return 0, len(indices)
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS kioku_embedding_results "
            "(id bigint, text_hash varchar(64), embedding halfvec) ON COMMIT DELETE ROWS"
        )
        _copy_results(cursor, [rows[i] for i in indices], [vectors[i] for i in indices])
        cursor.execute(
            f"""
            UPDATE {table} AS row SET {_embedded_sql(space, "result.embedding", "result.text_hash")}
            FROM kioku_embedding_results AS result
            WHERE row.id = result.id AND row.{hash_field} = result.text_hash
              AND row.embedding_claimed_until = %s
            """,
            [space.model, EmbeddingStatus.DONE, lease],
        )
        written = cursor.rowcount
        if written < len(indices):
            # The text changed while we embedded it: discard, keep pending, don't burn the attempt.
            cursor.execute(
                f"""
                UPDATE {table} AS row SET embedding_claimed_until = NULL,
                    embedding_attempts = greatest(row.embedding_attempts - 1, 0),
                    embedding_next_attempt_at = now()
                FROM kioku_embedding_results AS result
                WHERE row.id = result.id AND row.{hash_field} <> result.text_hash
                  AND row.embedding_claimed_until = %s
                """,
                [lease],
            )
    return written, 0


def embedding_write_now(
    *,
    model: type[EmbeddableModel],
    row_id: int,
    text_hash: str,
    vector: Sequence[float],
    space: VectorSpace,
) -> bool:
    """Store a vector computed for one row's text inside the caller's transaction (a record
    written together with its vector, such as a resolved case): the columns the write-back sets,
    only while the row still holds that text and `space` is still the one being filled. False:
    nothing written, the pipeline embeds the row as usual."""
    if space_state_locked().writing != space:
        return False
    literal = halfvec_literal(vector)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_table(model)} SET {_embedded_sql(space, "%s::halfvec", "%s")}
            WHERE id = %s AND {model.EMBEDDING_HASH_FIELD} = %s
            """,
            [literal, text_hash, space.model, EmbeddingStatus.DONE, row_id, text_hash],
        )
        return cursor.rowcount == 1


def _copy_results(
    cursor: CursorWrapper, rows: list[ClaimedRow], vectors: list[Sequence[float]]
) -> None:
    encoded = HalfvecBinary(vectors)
    buffer = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    for index, row in enumerate(rows):
        hash_bytes = row.text_hash.encode()
        vector = encoded[index]
        buffer += struct.pack(">hiq", 3, 8, row.pk)
        buffer += struct.pack(">i", len(hash_bytes)) + hash_bytes
        buffer += struct.pack(">i", len(vector)) + vector
    buffer += b"\xff\xff"
    with cursor.cursor.copy("COPY kioku_embedding_results FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.write(bytes(buffer))


def _record_failures(
    model: type[EmbeddableModel], rows: list[ClaimedRow], lease: datetime, errors: dict[int, str]
) -> tuple[int, int]:
    """Count a failed attempt against each row (only that row); dead letter after N attempts."""
    if not errors:
        return 0, 0
    failed = dead = 0
    with transaction.atomic():
        for index, message in errors.items():
            row = rows[index]
            instance = (
                model.objects.select_for_update()
                .filter(pk=row.pk, embedding_claimed_until=lease)
                .first()
            )
            if instance is None:
                continue  # lease lost: another worker owns the row now
            dead += _failure_record(model, instance, attempt=row.attempts, message=message)
            failed += 1
    return failed, dead


def _lost_attempts_record(*, model: type[EmbeddableModel], limit: int) -> int:
    """Rows whose lease ended while they were still pending: the worker holding them died
    (killed, timed out by django-q2, or cut off from the database). Each lost attempt counts
    like a failed one — an error entry, the backoff, a dead letter after N attempts — so a row
    that keeps killing its worker is neither retried at once nor forever. Returns the rows
    recorded."""
    table = _table(model)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT row.id FROM {QUEUE_TABLE} AS due JOIN {table} AS row ON row.id = due.row_id
            WHERE due.table_name = %s AND due.due_at <= now()
              AND row.embedding_status = %s AND row.embedding_claimed_until < now()
            ORDER BY due.due_at, due.row_id LIMIT %s
            """,
            [model._meta.db_table, EmbeddingStatus.PENDING, limit],
        )
        candidates = [pk for (pk,) in cursor.fetchall()]
    if not candidates:
        return 0
    with transaction.atomic():
        lost = list(
            model.objects.select_for_update(skip_locked=True).filter(
                pk__in=candidates,
                embedding_status=EmbeddingStatus.PENDING,
                embedding_claimed_until__lt=timezone.now(),
            )
        )
        for instance in lost:
            _failure_record(
                model,
                instance,
                attempt=instance.embedding_attempts,
                message=(
                    f"The worker stopped during attempt {instance.embedding_attempts} (killed, "
                    "timed out or cut off from the database): its lease ended without a result."
                ),
            )
    if lost:
        model.embedding_batch_done([instance.pk for instance in lost])
    return len(lost)


def _failure_record(
    model: type[EmbeddableModel], instance: EmbeddableModel, *, attempt: int, message: str
) -> bool:
    """The one rule for a failed attempt of a locked row: its error kept in the history, the
    row released, backed off, and a dead letter once it used up its attempts. True: dead."""
    is_dead = attempt >= settings.KIOKU_EMBEDDING_MAX_ATTEMPTS
    now = timezone.now()
    entry = {"at": now.isoformat(), "attempt": attempt, "error": message[:500]}
    history = (list(instance.embedding_errors) + [entry])[-ERROR_HISTORY:]
    model.objects.filter(pk=instance.pk).update(
        embedding_status=EmbeddingStatus.DEAD if is_dead else EmbeddingStatus.PENDING,
        embedding_claimed_until=None,
        embedding_last_error=message[:2000],
        embedding_errors=history,
        embedding_next_attempt_at=now + _backoff(attempt),
    )
    return is_dead


def _backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter between a row's attempts: with the default base of
    10 s, ~10 s, 20 s, 40 s … ≤ 1 h."""
    base = min(3600, settings.KIOKU_EMBEDDING_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=base * (0.5 + random.random() / 2))


def _release(
    model: type[EmbeddableModel],
    rows: Iterable[ClaimedRow],
    lease: datetime,
    keep: Iterable[int],
    *,
    delay: float,
) -> None:
    """Give rows back without burning their attempt (not their fault: quota, Retry-After)."""
    keep = set(keep)
    ids = [row.pk for index, row in enumerate(rows) if index not in keep]
    if not ids:
        return
    model.objects.filter(pk__in=ids, embedding_claimed_until=lease).update(
        embedding_claimed_until=None,
        embedding_attempts=F("embedding_attempts") - 1,
        embedding_next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )


def pipeline_pause(*, reason: str, error: str = "", seconds: int | None = None) -> None:
    seconds = seconds or settings.KIOKU_EMBEDDING_QUOTA_PAUSE_SECONDS
    EmbeddingPipelineState.objects.update_or_create(
        id=1,
        defaults={
            "paused_until": timezone.now() + timedelta(seconds=seconds),
            "paused_reason": reason,
            "last_error": error[:2000],
        },
    )
    logger.warning("Embedding pipeline paused (%s): %s", reason, error)


def pipeline_resume() -> None:
    EmbeddingPipelineState.objects.update_or_create(
        id=1, defaults={"paused_until": None, "paused_reason": "", "last_error": ""}
    )


@dataclass
class RunReport:
    batches: int = 0
    seconds: float = 0.0
    totals: BatchReport = field(default_factory=BatchReport)


def embedding_run(
    *,
    max_seconds: float | None = None,
    concurrency: int | None = None,
    stop: threading.Event | None = None,
    idle_wait: float = 0.0,
    max_batches: int | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> RunReport:
    """Process batches until nothing is due (or `max_seconds` pass, or `stop` is set), with up
    to `concurrency` batches in flight. Stopping lets in-flight batches finish; their rows are
    written back or, if a worker is killed instead, released by lease expiry."""
    concurrency = concurrency or settings.KIOKU_EMBEDDING_CONCURRENCY
    stop = stop or threading.Event()
    started = time.monotonic()
    report = RunReport()
    lock = threading.Lock()

    def worker() -> None:
        try:
            while not stop.is_set():
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    return
                with lock:
                    if max_batches is not None and report.batches >= max_batches:
                        return
                    report.batches += 1
                try:
                    batch = _process_all_models()
                except (OperationalError, InterfaceError) as exc:
                    if not database_unreachable(exc):
                        raise
                    # The database stays out of reach: stop this worker; its rows come back
                    # when their lease ends, and the schedule starts the next run.
                    logger.exception("Embedding stopped: the database is unreachable.")
                    return
                with lock:
                    report.totals.add(batch)
                if on_batch:
                    on_batch(batch)
                if batch.paused:
                    return
                if batch.claimed == 0:
                    if idle_wait <= 0:
                        return
                    stop.wait(idle_wait)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker, name=f"embedder-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if not report.totals.paused:
        # Nothing left to claim (or time is up): complete a model switch whose rows are all
        # embedded, and clear the slot a completed switch left behind.
        remaining = (
            None if max_seconds is None else max(1.0, max_seconds - (time.monotonic() - started))
        )
        _on_live_connection(lambda: embedding_switch_finish(max_seconds=remaining))
    report.seconds = time.monotonic() - started
    return report


def _process_all_models() -> BatchReport:
    total = BatchReport()
    for model in embeddable_models():
        total.add(embedding_process_batch(model=model))
        if total.paused:
            break
    return total


def dead_letters_retry(
    *, model: type[EmbeddableModel] = KnowledgeChunk, ids: list[int] | None = None
) -> int:
    """Give dead letters a fresh set of attempts. Their error history is kept."""
    rows = model.objects.filter(embedding_status=EmbeddingStatus.DEAD)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    embedding_enqueue()
    return rows.update(**embedding_requeue_fields())
