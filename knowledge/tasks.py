"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from django.conf import settings

from knowledge.embed import pipeline, vector_index
from knowledge.embed.enqueue import embedding_run_started
from knowledge.ingest import web_sources
from knowledge.models import KnowledgeSource


def embedding_run() -> dict:
    """Embed everything due, then stop (the schedule and ingestion enqueue the next run).
    Stays well inside the cluster timeout so django-q2 never kills it mid-batch."""
    embedding_run_started()
    report = pipeline.embedding_run(max_seconds=settings.Q_CLUSTER["timeout"] * 0.6)
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


def analyze_if_bulk_loaded() -> bool:
    return vector_index.analyze_if_bulk_loaded()


def web_sources_refresh() -> dict[str, int]:
    return web_sources.web_sources_refresh()


def web_source_fetch(source_id: int) -> str:
    source = KnowledgeSource.objects.filter(pk=source_id).first()
    if source is None:
        return "gone"
    return web_sources.web_source_fetch(url=source.uri, source_type=source.source_type).outcome
