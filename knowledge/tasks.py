"""django-q2 entry points: load ids, call one service, safe to run twice."""

from django.conf import settings

from knowledge.embed.pipeline import embedding_run
from knowledge.embed.vector_index import analyze_if_bulk_loaded
from knowledge.ingest.web_sources import web_source_fetch, web_sources_refresh
from knowledge.models import KnowledgeSource


def embedding_process_task() -> dict:
    """Embed everything due, then stop (the schedule and ingestion enqueue the next run).
    Stays well inside the cluster timeout so django-q2 never kills it mid-batch."""
    report = embedding_run(max_seconds=max(10, settings.Q_CLUSTER["timeout"] * 0.6))
    totals = report.totals
    return {
        "batches": report.batches,
        "embedded": totals.embedded,
        "failed": totals.failed,
        "dead": totals.dead,
        "stale": totals.stale,
        "rescheduled": totals.rescheduled,
        "paused": totals.paused,
    }


def index_maintenance_task() -> bool:
    return analyze_if_bulk_loaded()


def web_sources_refresh_task() -> dict[str, int]:
    return web_sources_refresh()


def web_source_fetch_task(source_id: int) -> str:
    source = KnowledgeSource.objects.filter(pk=source_id).first()
    if source is None:
        return "gone"
    return web_source_fetch(url=source.uri, source_type=source.source_type).outcome
