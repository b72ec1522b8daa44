"""Embedding spaces: which vectors search reads, and switching model or dimensions without
downtime.

An *embedding space* is a model and a vector size. Every embeddable row has two vector slots
(`EMBEDDING_SLOTS`); each slot holds the vectors of one space and has its own HNSW expression
index, `((<slot>::halfvec(<dims>)) halfvec_cosine_ops)`, which search's query repeats so the
planner uses it. `EmbeddingSpaceState` records the *active* space (what search reads) and, during
a switch, the *target* space being filled in the other slot.

A switch (`manage.py reembed`, `POST /api/v1/index/switch`, the dashboard button):

1. **start** — record the configured model as the target, empty the other slot of anything
   else, create its index (CONCURRENTLY: on an empty column it is instant, and HNSW inserts cost
   far less than the provider calls that feed them), queue every row lacking a target vector in
   id-range batches, then mark the switch queued;
2. **fill** — the pipeline embeds with the target model into the target slot; search keeps
   reading the complete active slot, so no row drops out of vector search meanwhile;
3. **cutover** — once queued and nothing is pending (dead letters do not block: they are
   reported, keyword-searchable, and retried from the dead-letter page), one short transaction
   flips the active space: one row updated, no table rewrite, no lock on the chunk table;
4. **retire** — the old slot's index is dropped (before its vectors, so no HNSW vacuum of a
   dead index) and its vectors cleared in id-range batches.

Rows never mix: search filters on the active slot *and* its model column, each slot's index
casts to one size, and write-backs check under a share lock that the space they embedded for is
still the one being written.
"""

import functools
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone

from knowledge.embed.base import EmbeddingProvider
from knowledge.embed.enqueue import embedding_enqueue
from knowledge.embed.providers import configured_model, get_embedding_provider
from knowledge.models import (
    EMBEDDING_SLOTS,
    EmbeddableModel,
    EmbeddingSpaceState,
    EmbeddingStatus,
    embeddable_models,
)

BATCH_ROWS = 5000  # rows per transaction when queueing or clearing a slot


@dataclass(frozen=True)
class VectorSpace:
    model: str
    dimensions: int
    slot: int = 1

    @property
    def column(self) -> str:
        return EMBEDDING_SLOTS[self.slot][0]

    @property
    def model_column(self) -> str:
        return EMBEDDING_SLOTS[self.slot][1]

    def cast(self, alias: str = "") -> str:
        """The indexed expression; queries must use exactly this for the index to serve them."""
        prefix = f"{alias}." if alias else ""
        return f"({prefix}{self.column}::halfvec({self.dimensions}))"

    def index_name(self, model: type[EmbeddableModel]) -> str:
        return f"{model.EMBEDDING_INDEX_PREFIX}_{self.column}_hnsw_{self.dimensions}"

    def holds(self, model: str, dimensions: int) -> bool:
        return self.model == model and self.dimensions == dimensions

    def __str__(self) -> str:
        return f"{self.model} ({self.dimensions} dimensions)"


def halfvec_literal(vector: Sequence[float]) -> str:
    """A vector as the text PostgreSQL casts to halfvec (`%s::halfvec`): six significant digits
    are more than a half float holds, and keep the literal short (16 KB at 1536 dimensions).
    One %-format over the whole vector: 0.16 ms at 1536 dimensions, 0.23 ms a number at a time."""
    return _literal_format(len(vector)) % tuple(vector)


@functools.lru_cache(maxsize=8)
def _literal_format(dimensions: int) -> str:
    return "[" + ",".join(["%.6g"] * dimensions) + "]"


@dataclass(frozen=True)
class SpaceState:
    active: VectorSpace
    target: VectorSpace | None = None
    retired: VectorSpace | None = None
    switch_started_at: datetime | None = None
    switch_queued_at: datetime | None = None
    switched_at: datetime | None = None
    is_recorded: bool = False

    @property
    def writing(self) -> VectorSpace:
        """The space the pipeline fills: the target during a switch, else the active one."""
        return self.target or self.active

    @property
    def is_switching(self) -> bool:
        return self.target is not None


def configured_space() -> tuple[str, int]:
    """(model, dimensions) the settings ask for: the offline model without OPENAI_API_KEY."""
    return configured_model()


def _state_from_row(row: EmbeddingSpaceState | None) -> SpaceState:
    if row is None:
        model, dimensions = configured_space()
        return SpaceState(active=VectorSpace(model, dimensions, 1))
    other = 3 - row.active_slot
    return SpaceState(
        active=VectorSpace(row.active_model, row.active_dimensions, row.active_slot),
        target=VectorSpace(row.target_model, row.target_dimensions, other)
        if row.target_model
        else None,
        retired=VectorSpace(row.retired_model, row.retired_dimensions, other)
        if row.retired_model
        else None,
        switch_started_at=row.switch_started_at,
        switch_queued_at=row.switch_queued_at,
        switched_at=row.switched_at,
        is_recorded=True,
    )


def space_state() -> SpaceState:
    """The recorded spaces (a read: creates nothing). Nothing recorded: the configured space."""
    return _state_from_row(EmbeddingSpaceState.objects.filter(pk=1).first())


# Search reads the active space on every query. Reading it with the ORM cost 0.6 ms per search
# (BENCHMARKS.md), so each process keeps the row it last saw and search sends this statement in
# the same round trip as its query: a cutover made by any process since is noticed on the next
# search, which is then run again in the new space (`active_space_confirm`). The price: the
# first search of each process after a cutover embeds its query twice, once in the old space.
ACTIVE_SPACE_SQL = (
    f"SELECT active_slot, active_model, active_dimensions FROM {EmbeddingSpaceState._meta.db_table}"
    " WHERE id = 1"
)
_UNREAD = object()
_active_space_seen: object = _UNREAD  # the row ACTIVE_SPACE_SQL returned (None: no row)


def active_space_cached(cursor: CursorWrapper) -> VectorSpace:
    """The active space as this process last saw it (read on `cursor` the first time). Only
    for a caller that sends ACTIVE_SPACE_SQL with its query and calls `active_space_confirm`."""
    if _active_space_seen is _UNREAD:
        cursor.execute(ACTIVE_SPACE_SQL)
        active_space_confirm(cursor.fetchall())
    return _active_space_from(_active_space_seen)


def active_space_confirm(rows: list[tuple]) -> bool:
    """Record what ACTIVE_SPACE_SQL returned; False when it is not what the caller searched with
    (the caller runs again, in the space `active_space_cached` now returns)."""
    global _active_space_seen
    seen = tuple(rows[0]) if rows else None
    if seen == _active_space_seen:
        return True
    _active_space_seen = seen
    return False


def active_space_forget() -> None:
    """Read the active space again on the next search (tests, whose databases start over)."""
    global _active_space_seen
    _active_space_seen = _UNREAD


def _active_space_from(row: object) -> VectorSpace:
    if row is None:  # nothing recorded: the configured space, as `space_state` says
        model, dimensions = configured_space()
        return VectorSpace(model, dimensions, 1)
    slot, model, dimensions = row  # type: ignore[misc]
    return VectorSpace(model, dimensions, slot)


def space_state_locked() -> SpaceState:
    """Inside a transaction: the spaces, held with a share lock until commit, so a cutover (which
    takes the row FOR UPDATE) waits until vectors read or written for these spaces are committed."""
    table = EmbeddingSpaceState._meta.db_table
    rows = list(EmbeddingSpaceState.objects.raw(f"SELECT * FROM {table} WHERE id = 1 FOR SHARE"))
    return _state_from_row(rows[0] if rows else None)


def space_record() -> SpaceState:
    """The spaces, recording the configured one as active on the first write of a vector."""
    state = space_state()
    if state.is_recorded:
        return state
    model, dimensions = configured_space()
    _, created = EmbeddingSpaceState.objects.get_or_create(
        pk=1, defaults={"active_model": model, "active_dimensions": dimensions}
    )
    state = space_state()
    if created:
        # Migration 0005 indexed slot 1 at the dimensions set then; settings may say otherwise.
        vector_indexes_sync(state)
    return state


def space_reset_for_import(*, model: str, dimensions: int) -> VectorSpace:
    """Before a bulk import of vectors into an empty index (benchmarks, restores): make
    (model, dimensions) the active space in slot 1, with its index. Refused while any row holds a
    vector: switching what existing vectors mean is what a model switch is for."""
    if any(
        model_class.objects.filter(
            Q(embedding__isnull=False) | Q(embedding_alt__isnull=False)
        ).exists()
        for model_class in embeddable_models()
    ):
        raise ValueError("The index holds vectors: use a model switch (manage.py reembed).")
    EmbeddingSpaceState.objects.update_or_create(
        pk=1,
        defaults={
            "active_slot": 1,
            "active_model": model,
            "active_dimensions": dimensions,
            "target_model": "",
            "target_dimensions": None,
            "switch_started_at": None,
            "switch_queued_at": None,
            "retired_model": "",
            "retired_dimensions": None,
        },
    )
    state = space_state()
    vector_indexes_sync(state)
    return state.active


def embedding_provider_for(space: VectorSpace) -> EmbeddingProvider:
    return get_embedding_provider(model=space.model, dimensions=space.dimensions)


# --- The vector indexes ---------------------------------------------------------------------------


def _concurrently() -> str:
    # CONCURRENTLY cannot run in a transaction block (tests, callers inside atomic()).
    return "" if connection.in_atomic_block else " CONCURRENTLY"


@contextmanager
def index_build_settings() -> Iterator[CursorWrapper]:
    """A cursor whose session may build indexes in parallel, with `KIOKU_INDEX_BUILD_MEMORY_MB`.

    PostgreSQL sizes a parallel build by the table's main heap, which holds little here: text
    and vectors are TOASTed, so a 20,000-chunk table looks like 3 MB and gets no worker. Setting
    `min_parallel_table_scan_size` to 0 lets `KIOKU_INDEX_BUILD_WORKERS` apply (an HNSW build of
    20,000 1536-d vectors: 11.8 s serial, 7.0 s with one worker on 2 cores). Session settings,
    reset on the way out (the connection may be reused).

    Behind a transaction pooler (KIOKU_DB_TRANSACTION_POOLER) the build's statement may run on
    another server connection than the settings, which would stay behind on theirs: the build
    runs with the server's own settings instead (run large builds on a direct connection).
    """
    with connection.cursor() as cursor:
        if settings.KIOKU_DB_TRANSACTION_POOLER:
            yield cursor
            return
        cursor.execute(
            "SELECT set_config('maintenance_work_mem', %s, false),"
            " set_config('max_parallel_maintenance_workers', %s, false),"
            " set_config('min_parallel_table_scan_size', '0', false)",
            [f"{settings.KIOKU_INDEX_BUILD_MEMORY_MB}MB", str(settings.KIOKU_INDEX_BUILD_WORKERS)],
        )
        try:
            yield cursor
        finally:
            cursor.execute(
                "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers;"
                " RESET min_parallel_table_scan_size"
            )


# pgvector's own defaults, which an index built without options has.
PGVECTOR_HNSW_DEFAULTS = {"m": 16, "ef_construction": 64}


def hnsw_graph_settings() -> dict[str, int]:
    """The graph every HNSW index should have (KIOKU_HNSW_M, KIOKU_HNSW_EF_CONSTRUCTION)."""
    return {"m": settings.KIOKU_HNSW_M, "ef_construction": settings.KIOKU_HNSW_EF_CONSTRUCTION}


def hnsw_options(graph: dict[str, int] | None = None) -> str:
    """The WITH clause of an HNSW index with `graph` (default: the settings' graph)."""
    graph = hnsw_graph_settings() if graph is None else graph
    return ", ".join(f"{name} = {value}" for name, value in graph.items())


def vector_index_sql(model: type[EmbeddableModel], space: VectorSpace) -> str:
    return (
        f"CREATE INDEX{_concurrently()} IF NOT EXISTS {space.index_name(model)} "
        f"ON {model._meta.db_table} USING hnsw ({space.cast()} halfvec_cosine_ops) "
        f"WITH ({hnsw_options()})"
    )


def _slot_indexes(models: list[type[EmbeddableModel]]) -> list[tuple[str, bool, list[str]]]:
    """The HNSW indexes of these tables' vector slots, in one query: (name, valid, storage
    options such as "m=16")."""
    slots = "|".join(column for column, _ in EMBEDDING_SLOTS.values())
    prefixes = "|".join(model.EMBEDDING_INDEX_PREFIX for model in models)
    pattern = re.compile(rf"^({prefixes})_({slots})_hnsw_\d+$")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT index.relname, pg_index.indisvalid, coalesce(index.reloptions, '{}')
            FROM pg_index
            JOIN pg_class AS index ON index.oid = pg_index.indexrelid
            JOIN pg_am ON pg_am.oid = index.relam
            WHERE pg_index.indrelid = ANY(ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) t))
              AND pg_am.amname = 'hnsw'
            """,
            [[model._meta.db_table for model in models]],
        )
        return [row for row in cursor.fetchall() if pattern.match(row[0])]


def vector_indexes(model: type[EmbeddableModel]) -> dict[str, bool]:
    """The HNSW indexes of a table's vector slots: name → valid (a CONCURRENTLY build that failed
    leaves an invalid index behind)."""
    return {name: valid for name, valid, _ in _slot_indexes([model])}


def vector_index_graphs() -> dict[str, dict[str, int]]:
    """The graph each valid vector index (of every embeddable table) was built with: name → {m,
    ef_construction}, from the index's storage options (pgvector's defaults where none). One
    query, read by the index status."""
    graphs = {}
    for name, valid, options in _slot_indexes(embeddable_models()):
        if not valid:
            continue
        graph = dict(PGVECTOR_HNSW_DEFAULTS)
        for option in options:
            key, _, value = option.partition("=")
            if key in graph:
                graph[key] = int(value)
        graphs[name] = graph
    return dict(sorted(graphs.items()))


@dataclass(frozen=True)
class IndexRebuild:
    index: str
    before: dict[str, int]
    after: dict[str, int]
    seconds: float


def vector_indexes_rebuild(*, every: bool = False) -> list[IndexRebuild]:
    """Rebuild the vector indexes whose graph differs from the settings (all of them with
    `every`), one at a time, without blocking search: the index's options are changed, then
    REINDEX CONCURRENTLY builds a new graph beside the old one, which serves queries until the
    new one replaces it. Inside a transaction (tests) the rebuild is a plain REINDEX."""
    wanted = hnsw_graph_settings()
    rebuilt = []
    for name, graph in vector_index_graphs().items():
        if graph == wanted and not every:
            continue
        started = time.monotonic()
        with index_build_settings() as cursor:
            cursor.execute(f"ALTER INDEX {name} SET ({hnsw_options()})")
            cursor.execute(f"REINDEX INDEX{_concurrently()} {name}")
        rebuilt.append(IndexRebuild(name, graph, wanted, time.monotonic() - started))
    return rebuilt


def vector_indexes_sync(state: SpaceState) -> list[str]:
    """Make each table's vector indexes those of the active and target spaces: drop the others
    (a retired slot, another size), create missing ones. Returns the statements run."""
    statements = []
    for model in embeddable_models():
        wanted = {space.index_name(model): space for space in (state.active, state.target) if space}
        existing = vector_indexes(model)
        for name, valid in existing.items():
            if name not in wanted or not valid:
                statements.append(f"DROP INDEX{_concurrently()} IF EXISTS {name}")
        for name, space in wanted.items():
            if not existing.get(name):
                statements.append(vector_index_sql(model, space))
    if statements and connection.in_atomic_block:
        # Rows this transaction wrote leave their deferred foreign-key checks pending, and
        # PostgreSQL refuses to index a table with pending trigger events: run the checks now
        # (SET CONSTRAINTS ALL IMMEDIATE, then back to DEFERRED). A demo load in a new database
        # records the space on its first vector, after creating cards in the same transaction.
        connection.check_constraints()
    with index_build_settings() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return statements


def active_vector_index_names() -> list[str]:
    state = space_state()
    return [state.active.index_name(model) for model in embeddable_models()]


# --- Switching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwitchReport:
    outcome: str  # "current", "started", "switching", "completed"
    message: str
    active: str
    target: str | None = None
    queued: int = 0


def embedding_switch_start() -> SwitchReport:
    """Start re-embedding everything with the configured model and dimensions, if the index
    holds another space. Safe to run again: a switch already heading there just goes on (its
    queueing is finished if an earlier run was interrupted); a switch heading elsewhere is
    abandoned for the new target; configuring the active space again cancels the switch."""
    model, dimensions = configured_space()
    state = space_record()
    if state.retired is not None:
        embedding_retired_clear()  # the slot about to be filled must be empty first
    with transaction.atomic():
        row = EmbeddingSpaceState.objects.select_for_update().get(pk=1)
        state = _state_from_row(row)
        if state.active.holds(model, dimensions) and state.target is None:
            return SwitchReport(
                "current", f"The index already uses {state.active}.", str(state.active)
            )
        cancelled = _target_record(row, state, model, dimensions)
        state = _state_from_row(row)
    if state.target is None:
        return _switch_cancelled(state, cancelled)
    if cancelled is not None:
        embedding_retired_clear()
    return _switch_queue(state)


def _target_record(
    row: EmbeddingSpaceState, state: SpaceState, model: str, dimensions: int
) -> VectorSpace | None:
    """On the locked row: make (model, dimensions) the target, or no target when it is the
    active space. Returns the target abandoned for it, if any (its slot is then retired)."""
    if state.active.holds(model, dimensions):
        # Settings went back to the active space: abandon the switch.
        _retire_target(row)
        return state.target
    if state.target is not None and state.target.holds(model, dimensions):
        return None
    cancelled = state.target
    if cancelled is not None:
        _retire_target(row)
    row.target_model, row.target_dimensions = model, dimensions
    row.switch_started_at, row.switch_queued_at = timezone.now(), None
    row.save()
    return cancelled


def _switch_cancelled(state: SpaceState, cancelled: VectorSpace | None) -> SwitchReport:
    """Rows follow the active slot again; the abandoned target's slot is cleared."""
    queued = _rows_follow(state.active)
    embedding_retired_clear()
    return SwitchReport(
        "current",
        f"Switch to {cancelled} cancelled: the index uses {state.active}; {queued} row(s) queued.",
        str(state.active),
        queued=queued,
    )


def _switch_queue(state: SpaceState) -> SwitchReport:
    """Queue the rows the target lacks and build its index, unless an earlier run finished
    that; then cut over at once if no row is owed a vector (an empty index, say)."""
    already_queued = state.switch_queued_at is not None
    queued = 0
    if not already_queued:
        queued = _rows_follow(state.target)
        vector_indexes_sync(state)
        EmbeddingSpaceState.objects.filter(
            pk=1, target_model=state.target.model, target_dimensions=state.target.dimensions
        ).update(switch_queued_at=timezone.now())
    embedding_enqueue()
    finished = embedding_switch_finish()
    if finished is not None:
        return finished
    return SwitchReport(
        "switching" if already_queued else "started",
        f"{'Switching' if already_queued else 'Switch started'}: {state.active} → {state.target}; "
        f"search keeps using {state.active.model} until every row has a {state.target.model} vector.",
        str(state.active),
        str(state.target),
        queued=queued,
    )


def _retire_target(row: EmbeddingSpaceState) -> None:
    row.retired_model, row.retired_dimensions = row.target_model, row.target_dimensions
    row.target_model, row.target_dimensions = "", None
    row.switch_started_at = row.switch_queued_at = None
    row.save()


def _rows_follow(space: VectorSpace) -> int:
    """Make every row's bookkeeping describe `space` (the one the pipeline now fills): rows
    without a vector of it are queued with fresh attempts (dead letters too), rows holding one
    are done. In id-range batches, each its own short transaction. Returns rows queued."""
    queued = 0
    for model in embeddable_models():
        table = model._meta.db_table
        hash_field = model.EMBEDDING_HASH_FIELD
        for low, high in _id_ranges(model):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    UPDATE {table} SET embedding_status = %s, embedding_attempts = 0,
                        embedding_next_attempt_at = now(), embedding_claimed_until = NULL,
                        {space.column} = NULL, {space.model_column} = ''
                    WHERE id BETWEEN %s AND %s
                      AND ({space.column} IS NULL OR {space.model_column} <> %s)
                    """,
                    [EmbeddingStatus.PENDING, low, high, space.model],
                )
                queued += cursor.rowcount
                cursor.execute(
                    f"""
                    UPDATE {table} SET embedding_status = %s, embedding_claimed_until = NULL,
                        embedding_text_hash = {hash_field}, embedding_last_error = ''
                    WHERE id BETWEEN %s AND %s AND embedding_status <> %s
                      AND {space.column} IS NOT NULL AND {space.model_column} = %s
                    """,
                    [EmbeddingStatus.DONE, low, high, EmbeddingStatus.DONE, space.model],
                )
    return queued


def _id_ranges(model: type[EmbeddableModel]) -> Iterator[tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id), max(id) FROM {model._meta.db_table}")
        low, high = cursor.fetchone()
    if low is None:
        return
    while low <= high:
        yield low, low + BATCH_ROWS - 1
        low += BATCH_ROWS


def embedding_switch_finish(*, max_seconds: float | None = None) -> SwitchReport | None:
    """Cut over to the target once every row has a target vector (or is a dead letter), then
    retire the old slot. Cheap when there is nothing to do; the pipeline calls it after each run."""
    report = _cutover()
    embedding_retired_clear(max_seconds=max_seconds)
    return report


def _cutover() -> SwitchReport | None:
    state = space_state()
    if state.target is None or state.switch_queued_at is None or _any_pending():
        return None
    vector_indexes_sync(replace(state, retired=None))  # the new slot's index must exist
    with transaction.atomic():
        row = EmbeddingSpaceState.objects.select_for_update().filter(pk=1).first()
        state = _state_from_row(row)
        if state.target is None or state.switch_queued_at is None or _any_pending():
            return None
        old, new = state.active, state.target
        row.active_slot, row.active_model, row.active_dimensions = (
            new.slot,
            new.model,
            new.dimensions,
        )
        row.retired_model, row.retired_dimensions = old.model, old.dimensions
        row.target_model, row.target_dimensions = "", None
        row.switch_started_at = row.switch_queued_at = None
        row.switched_at = timezone.now()
        row.save()
    dead = sum(
        model.objects.filter(embedding_status=EmbeddingStatus.DEAD).count()
        for model in embeddable_models()
    )
    message = f"Switched to {new}."
    if dead:
        message += (
            f" {dead} dead letter(s) have no {new.model} vector: keyword search finds them; "
            "retry them from the dead letters."
        )
    return SwitchReport("completed", message, str(new))


def _any_pending() -> bool:
    return any(
        model.objects.filter(embedding_status=EmbeddingStatus.PENDING).exists()
        for model in embeddable_models()
    )


def embedding_retired_clear(*, max_seconds: float | None = None) -> bool:
    """Drop the retired slot's index, then clear its vectors in id-range batches. Returns whether
    the slot is empty (False: time ran out; the next call goes on)."""
    state = space_state()
    if state.retired is None:
        return True
    # Only the active index stays: a new target may share the retired slot (a switch that
    # changed course), and its index can only be built once the slot is empty.
    vector_indexes_sync(replace(state, target=None))
    started = time.monotonic()
    retired = state.retired
    for model in embeddable_models():
        for low, high in _id_ranges(model):
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                return False
            model.objects.filter(
                Q(**{f"{retired.column}__isnull": False}) | ~Q(**{retired.model_column: ""}),
                pk__gte=low,
                pk__lte=high,
            ).update(**{retired.column: None, retired.model_column: ""})
    EmbeddingSpaceState.objects.filter(
        pk=1, retired_model=retired.model, retired_dimensions=retired.dimensions
    ).update(retired_model="", retired_dimensions=None)
    return True
