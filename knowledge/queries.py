"""Reads shared by the API, the pages and the admin."""

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from core.replicas import read_connection
from knowledge.embed.spaces import (
    SpaceState,
    VectorSpace,
    configured_space,
    hnsw_graph_settings,
    space_state,
    vector_index_graphs,
)
from knowledge.models import (
    SEARCHABLE_CHUNK,
    Answer,
    EmbeddingPipelineState,
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
)
from knowledge.offline import offline_state


def sources_with_counts() -> QuerySet[KnowledgeSource]:
    return KnowledgeSource.objects.annotate(
        n_chunks=Count("chunks"),
        n_embedded=Count("chunks", filter=Q(chunks__embedding_status=EmbeddingStatus.DONE)),
    )


def source_list(
    *,
    source_type: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
    query: str | None = None,
) -> QuerySet[KnowledgeSource]:
    sources = sources_with_counts()
    if source_type:
        sources = sources.filter(source_type=source_type)
    if status:
        sources = sources.filter(status=status)
    if enabled is not None:
        sources = sources.filter(enabled=enabled)
    if query:
        sources = sources.filter(Q(title__icontains=query) | Q(uri__icontains=query))
    return sources.order_by("-updated_at", "-id")


def source_chunks(*, source_id: int) -> QuerySet[KnowledgeChunk]:
    return KnowledgeChunk.objects.filter(source_id=source_id).order_by("ordinal")


# --- The vector index ---------------------------------------------------------------------------


def index_relations() -> dict[str, str]:
    """Relations whose on-disk size the index status reports: the vector index is the active
    space's (knowledge/embed/spaces.py)."""
    return {
        "table": KnowledgeChunk._meta.db_table,
        "hnsw_index": space_state().active.index_name(KnowledgeChunk),
        "gin_index": "chunk_search_vector_gin",
    }


def current_embedding_model() -> str:
    """The model of the vectors search reads (the active embedding space). Vectors from any
    other model cannot be compared with a query embedded by it, so they count as owed, not as
    indexed."""
    return space_state().active.model


def index_status() -> dict:
    """How far the vector index is built, what is owed, and what it costs on disk.

    `chunks.enabled` counts the chunks search can use (`SEARCHABLE_CHUNK`: enabled, not expired,
    of an enabled, current source);
    `progress` is the share of those with a vector of the active embedding space (the one search
    reads); `space.switch` says how far a model switch has filled its target. Counting takes one
    pass over the chunk table and one over the sources.
    """
    state = space_state()
    active = state.active
    counts = _chunk_counts(state)
    by_status, last_updated = _sources_by_status()
    pipeline = _pipeline_status()
    row_alert = settings.KIOKU_INDEX_ROW_ALERT
    enabled = counts["n_usable"]
    # Rounded down, so 100 % means every usable chunk is embedded.
    progress = math.floor(1000 * counts["n_usable_embedded"] / enabled) / 10 if enabled else 0.0
    return {
        "sources": {"total": sum(by_status.values()), "by_status": by_status},
        "chunks": {
            "total": counts["n_total"],
            "enabled": enabled,
            "enabled_embedded": counts["n_usable_embedded"],
        },
        "embedded": counts["n_embedded"],
        "embedded_other_model": counts["n_other_model"],
        "pending": counts["n_pending"],
        "dead_letters": counts["n_dead"],
        "model": active.model,
        "dimensions": active.dimensions,
        "offline": offline_state(space=active).search,
        "space": _space_status(state, enabled=enabled, target_embedded=counts["n_usable_target"]),
        "last_updated": last_updated,
        "available": counts["n_embedded"] > 0,
        "throughput_last_hour": {
            "chunks": counts["n_last_hour"],
            "per_minute": round(counts["n_last_hour"] / 60, 1),
        },
        "pipeline": pipeline,
        "sizes": index_sizes(),
        "graph": _graph_status(active),
        "row_alert": row_alert,
        "warning": _row_alert_warning(counts["n_total"], row_alert),
        "progress": progress,
    }


def _chunk_counts(state: SpaceState) -> dict[str, int]:
    """The chunk counts of the status, in one pass over the chunk table."""
    current = _holds_vector(state.active)
    in_target = _holds_vector(state.target) if state.target else Q(pk__isnull=True)  # no row
    has_vector = Q(embedding__isnull=False) | Q(embedding_alt__isnull=False)
    usable = SEARCHABLE_CHUNK
    # Aliases must not shadow field names ("enabled"), or the filters would read the aggregate.
    return KnowledgeChunk.objects.aggregate(
        n_total=Count("pk"),
        n_usable=Count("pk", filter=usable),
        n_embedded=Count("pk", filter=current),
        n_usable_embedded=Count("pk", filter=current & usable),
        n_other_model=Count("pk", filter=has_vector & ~current & ~in_target),
        n_usable_target=Count("pk", filter=in_target & usable),
        n_pending=Count("pk", filter=Q(embedding_status=EmbeddingStatus.PENDING)),
        n_dead=Count("pk", filter=Q(embedding_status=EmbeddingStatus.DEAD)),
        n_last_hour=Count("pk", filter=Q(embedded_at__gte=timezone.now() - timedelta(hours=1))),
    )


def _sources_by_status() -> tuple[dict[str, int], datetime | None]:
    """Sources per status (every status listed), and the latest fetch of any source."""
    by_status = dict.fromkeys(SourceStatus.values, 0)
    last_updated = None
    for row in (
        KnowledgeSource.objects.order_by()
        .values("status")
        .annotate(n=Count("pk"), last_fetched=Max("fetched_at"))
    ):
        by_status[row["status"]] = row["n"]
        if row["last_fetched"] and (last_updated is None or row["last_fetched"] > last_updated):
            last_updated = row["last_fetched"]
    return by_status, last_updated


def _pipeline_status() -> dict:
    # The row exists once the pipeline paused for the first time; a read must not create it.
    pipeline = EmbeddingPipelineState.objects.filter(pk=1).first() or EmbeddingPipelineState()
    is_paused = pipeline.is_paused()
    return {
        "paused": is_paused,
        "reason": pipeline.paused_reason if is_paused else "",
        "paused_until": pipeline.paused_until if is_paused else None,
        "state": _pipeline_state(pipeline) if is_paused else "running",
    }


def _row_alert_warning(total: int, row_alert: int) -> str | None:
    if total <= row_alert:
        return None
    return (
        f"The index holds {total:,} chunks, past the alert at {row_alert:,} "
        "(KIOKU_INDEX_ROW_ALERT). Watch search latency, keep ANALYZE current and plan "
        "partitioning the chunk table before it slows down."
    )


def _holds_vector(space: VectorSpace) -> Q:
    return Q(**{f"{space.column}__isnull": False, space.model_column: space.model})


def _space_status(state: SpaceState, *, enabled: int, target_embedded: int) -> dict:
    """The active space, a switch in progress, and whether the settings ask for another one."""
    model, dimensions = configured_space()
    switch = None
    if state.target:
        switch = {
            "model": state.target.model,
            "dimensions": state.target.dimensions,
            "started_at": state.switch_started_at,
            "queued": state.switch_queued_at is not None,
            "embedded": target_embedded,
            "total": enabled,
            "progress": math.floor(1000 * target_embedded / enabled) / 10 if enabled else 0.0,
        }
    heading_to = state.target or state.active
    return {
        "active": {
            "model": state.active.model,
            "dimensions": state.active.dimensions,
            "slot": state.active.slot,
            "index": state.active.index_name(KnowledgeChunk),
        },
        "configured": {"model": model, "dimensions": dimensions},
        "switch": switch,
        "switch_needed": not heading_to.holds(model, dimensions),
        "switched_at": state.switched_at,
        "retiring": str(state.retired) if state.retired else None,
    }


def _graph_status(active: VectorSpace) -> dict:
    """The active chunk index's HNSW graph against the settings; `rebuild_needed` when any
    vector index (chunks or cards) was built with another graph."""
    configured = hnsw_graph_settings()
    graphs = vector_index_graphs()
    return {
        "built": graphs.get(active.index_name(KnowledgeChunk)),
        "configured": configured,
        "rebuild_needed": any(graph != configured for graph in graphs.values()),
    }


def _pipeline_state(pipeline: EmbeddingPipelineState) -> str:
    return f"blocked: {pipeline.paused_reason}" if pipeline.paused_reason else "paused"


def index_sizes() -> dict[str, dict]:
    """On-disk size of the chunk table (with its indexes and TOAST) and of each search index.
    An index dropped for a bulk import (`chunk_indexes_deferred`) reports `bytes: None`."""
    relations = index_relations()
    names = list(relations)
    values_sql = ", ".join(["(%s, %s)"] * len(names))
    params = [part for name in names for part in (name, relations[name])]
    with read_connection().cursor() as cursor:
        cursor.execute(
            "SELECT name, pg_total_relation_size(to_regclass(relation)),"
            " pg_size_pretty(pg_total_relation_size(to_regclass(relation)))"
            f" FROM (VALUES {values_sql}) AS relations(name, relation)",
            params,
        )
        rows = cursor.fetchall()
    return {name: {"bytes": size, "pretty": pretty or "missing"} for name, size, pretty in rows}


# --- Answers --------------------------------------------------------------------------------------


def answers_with_sources() -> QuerySet[Answer]:
    return Answer.objects.select_related("asked_by", "api_key").prefetch_related("sources")


def answer_detail(answer_id: int) -> Answer:
    return answers_with_sources().get(pk=answer_id)


def answers_needing_curation() -> QuerySet[Answer]:
    """The curation queue: not-helpful answers, newest feedback first, with retrieved chunks."""
    return answers_with_sources().needs_curation().order_by("-feedback_at", "-id")


def content_gaps(limit: int = 200) -> list[dict]:
    """Questions that got the "no relevant documents" answer, most asked first: what the
    knowledge base lacks. Questions are grouped when their normalised wording is the same (case,
    punctuation, spacing) or similar (pg_trgm similarity ≥ KIOKU_ASK_GAP_SIMILARITY, e.g. "how do
    I pair the lock with my phone" and "how to pair my phone with the lock"); each group shows
    its most asked wording and its variants."""
    rows = list(
        Answer.objects.content_gaps()
        .values("question_normalized")
        .annotate(times=Count("id"), last_asked=Max("created_at"), question=Max("question"))
        .order_by("-times", "-last_asked")[: settings.KIOKU_ASK_GAP_CANDIDATES]
    )
    wordings = [row["question_normalized"] for row in rows]
    group_of = list(range(len(rows)))  # union-find over rows, the most asked one as root

    def root(i: int) -> int:
        while group_of[i] != i:
            group_of[i] = group_of[group_of[i]]
            i = group_of[i]
        return i

    if len(rows) > 1:
        with read_connection().cursor() as cursor:
            cursor.execute(
                """
                SELECT a.n - 1, b.n - 1
                FROM unnest(%s::text[]) WITH ORDINALITY AS a(q, n)
                JOIN unnest(%s::text[]) WITH ORDINALITY AS b(q, n) ON a.n < b.n
                WHERE similarity(a.q, b.q) >= %s
                """,
                [wordings, wordings, settings.KIOKU_ASK_GAP_SIMILARITY],
            )
            for first, second in cursor.fetchall():
                # Rows come most asked first: the lower index stays the group's wording.
                keep, merge = sorted((root(first), root(second)))
                group_of[merge] = keep
    groups: dict[int, dict] = {}
    for i, row in enumerate(rows):
        group = groups.setdefault(
            root(i), {**row, "times": 0, "variants": [], "last_asked": row["last_asked"]}
        )
        group["times"] += row["times"]
        group["last_asked"] = max(group["last_asked"], row["last_asked"])
        if i != root(i):
            group["variants"].append(row["question"])
    ordered = sorted(groups.values(), key=lambda g: (-g["times"], -g["last_asked"].timestamp()))
    return ordered[:limit]
