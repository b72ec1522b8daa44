"""The home page's dashboard: what a support team lead checks first, each figure read where its
rule lives (the index status, the answers' and sessions' QuerySets) in a handful of queries."""

from dataclasses import dataclass
from datetime import date, datetime, time

from django.apps import apps
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from core.backups import BackupStatus, backup_status
from knowledge.models import Answer, EmbeddingPipelineState, SourceStatus
from knowledge.queries import index_status
from sessions_app.models import ChatSession, SessionStatus

# Good news first: the order the home page lists source states in.
SOURCE_STATUS_ORDER = (
    SourceStatus.READY,
    SourceStatus.PARTIAL,
    SourceStatus.FAILED,
    SourceStatus.PENDING,
)
# The dispatch models the Dispatch panel reads; until both exist it says dispatch is not set up.
DISPATCH_MODELS = ("problemcard", "serviceorder")


@dataclass(frozen=True)
class StatusCount:
    status: str  # the stored value, as list pages take it in ?status=
    label: str
    count: int


@dataclass(frozen=True)
class KnowledgeFigures:
    sources: int
    sources_by_status: list[StatusCount]
    chunks: int
    searchable_chunks: int  # the chunks search can use
    searchable_embedded: int  # … that hold a vector of the active embedding space
    embedded_percent: float  # rounded down: 100.0 only when every one of them is embedded
    embedding_model: str  # the active embedding space's model


@dataclass(frozen=True)
class QuestionFigures:
    asked_today: int
    unanswered_today: int  # answered "no relevant documents": content gaps
    needing_curation: int  # marked not helpful: the feedback queue


@dataclass(frozen=True)
class SessionFigures:
    open_sessions: int  # holding messages not archived yet
    last_active_at: datetime | None


@dataclass(frozen=True)
class PipelineFigures:
    pending: int
    dead_letters: int
    embedded_last_hour: int
    is_paused: bool
    paused_reason: str
    paused_until: datetime | None
    last_error: str  # from the last pause; cleared when the pipeline resumes
    last_error_at: datetime | None


@dataclass(frozen=True)
class DispatchFigures:
    open_problem_cards: int
    orders_by_status: list[StatusCount]


@dataclass(frozen=True)
class HomeDashboard:
    as_of: datetime
    today: date  # in settings.TIME_ZONE
    today_since: datetime  # local midnight
    knowledge: KnowledgeFigures
    questions: QuestionFigures
    sessions: SessionFigures
    pipeline: PipelineFigures
    dispatch: DispatchFigures | None  # None: dispatch is not set up yet
    backups: BackupStatus  # read from the backup folder, not the database


def home_dashboard() -> HomeDashboard:
    """Knowledge, questions, chat sessions, the embedding pipeline, dispatch and backups, as the
    home page shows them. "Today" starts at midnight in settings.TIME_ZONE."""
    zone = timezone.get_default_timezone()
    today = timezone.localdate(timezone=zone)
    since = datetime.combine(today, time.min, tzinfo=zone)
    # One call for everything the index page shows, so the two pages agree.
    index = index_status()
    return HomeDashboard(
        as_of=timezone.now(),
        today=today,
        today_since=since,
        knowledge=_knowledge_figures(index),
        questions=_question_figures(since=since),
        sessions=_session_figures(),
        pipeline=_pipeline_figures(index),
        dispatch=dispatch_figures(),
        backups=backup_status(),
    )


def dispatch_figures() -> DispatchFigures | None:
    """Open problem cards and service orders by status, once the dispatch app has those models.
    The dispatch issue adds `dispatch.queries.dashboard_figures() -> DispatchFigures` beside
    them; until then this is None and the panel says dispatch is not set up (no made-up zeros)."""
    if not all(name in apps.get_app_config("dispatch").models for name in DISPATCH_MODELS):
        return None
    from dispatch.queries import dashboard_figures

    return dashboard_figures()


def _knowledge_figures(index: dict) -> KnowledgeFigures:
    by_status = index["sources"]["by_status"]
    return KnowledgeFigures(
        sources=index["sources"]["total"],
        sources_by_status=[
            StatusCount(status.value, status.label, by_status.get(status.value, 0))
            for status in SOURCE_STATUS_ORDER
        ],
        chunks=index["chunks"]["total"],
        searchable_chunks=index["chunks"]["enabled"],
        searchable_embedded=index["chunks"]["enabled_embedded"],
        embedded_percent=index["progress"],
        embedding_model=index["model"],
    )


def _question_figures(*, since: datetime) -> QuestionFigures:
    asked_today = Answer.objects.filter(created_at__gte=since)
    counts = Answer.objects.aggregate(
        asked_today=Count("pk", filter=Q(created_at__gte=since)),
        unanswered_today=Count("pk", filter=_rows_of(asked_today.content_gaps())),
        needing_curation=Count("pk", filter=_rows_of(Answer.objects.needs_curation())),
    )
    return QuestionFigures(**counts)


def _session_figures() -> SessionFigures:
    counts = ChatSession.objects.aggregate(
        open_sessions=Count("pk", filter=Q(status=SessionStatus.ACTIVE)),
        last_active_at=Max("last_active_at"),
    )
    return SessionFigures(**counts)


def _pipeline_figures(index: dict) -> PipelineFigures:
    # The row exists once the pipeline paused for the first time; a read must not create it.
    state = EmbeddingPipelineState.objects.filter(pk=1).first() or EmbeddingPipelineState()
    is_paused = state.is_paused()
    return PipelineFigures(
        pending=index["pending"],
        dead_letters=index["dead_letters"],
        embedded_last_hour=index["throughput_last_hour"]["chunks"],
        is_paused=is_paused,
        paused_reason=state.paused_reason if is_paused else "",
        paused_until=state.paused_until if is_paused else None,
        last_error=state.last_error,
        last_error_at=state.updated_at if state.last_error else None,
    )


def _rows_of(queryset: QuerySet) -> Q:
    """A Count(filter=...) condition for the rows of `queryset`, so a rule kept in a QuerySet
    method (content gaps, the curation queue) is used as it is, not written out again."""
    return Q(pk__in=queryset.values("pk"))


# --- Slowest statements (pg_stat_statements), for staff on the index page ----------------------

# Characters of a statement's text the page shows.
SLOW_STATEMENT_TEXT_CHARS = 300


@dataclass(frozen=True)
class SlowStatement:
    mean_ms: float
    calls: int
    total_ms: float
    query: str  # normalised by pg_stat_statements (constants as $1, $2, …), truncated


@dataclass(frozen=True)
class SlowStatements:
    statements: list[SlowStatement]
    # Why there are none to show and how to get them: "" when pg_stat_statements is recording.
    unavailable: str


def slow_statements(*, limit: int = 10) -> SlowStatements:
    """The statements of this database with the highest mean execution time, from
    pg_stat_statements — when the server preloads the library and the extension is installed
    (core migration 0006 installs it where it can)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'pg_stat_statements' = ANY(string_to_array("
            "replace(current_setting('shared_preload_libraries'), ' ', ''), ',')),"
            " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),"
            " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')"
        )
        is_loaded, is_installed, is_available = cursor.fetchone()
        if not is_available:
            return SlowStatements(
                [],
                "This PostgreSQL server does not offer pg_stat_statements (a contrib module):"
                " install the server's contrib package to see the slowest statements.",
            )
        if not is_loaded:
            return SlowStatements(
                [],
                "pg_stat_statements is not loaded: add shared_preload_libraries ="
                " 'pg_stat_statements' to postgresql.conf (or the managed service's parameter"
                " group) and restart the server. The embedded server has it after a restart"
                " (manage.py kioku_db stop, then start).",
            )
        if not is_installed:
            return SlowStatements(
                [],
                "pg_stat_statements is loaded but not installed in this database: run"
                " CREATE EXTENSION pg_stat_statements as a role allowed to, or manage.py migrate.",
            )
        cursor.execute(
            "SELECT mean_exec_time, calls, total_exec_time, left(query, %s)"
            " FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY mean_exec_time DESC LIMIT %s",
            [SLOW_STATEMENT_TEXT_CHARS, limit],
        )
        rows = cursor.fetchall()
    return SlowStatements(
        [
            SlowStatement(mean, calls, total, " ".join(text.split()))
            for mean, calls, total, text in rows
        ],
        "",
    )
