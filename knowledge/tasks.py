"""django-q2 entry points: load ids, call one service, safe to run twice."""

from knowledge.models import KnowledgeSource
from knowledge.web import web_source_fetch, web_sources_refresh


def web_sources_refresh_task() -> dict[str, int]:
    return web_sources_refresh()


def web_source_fetch_task(source_id: int) -> str:
    source = KnowledgeSource.objects.filter(pk=source_id).first()
    if source is None:
        return "gone"
    return web_source_fetch(url=source.uri, source_type=source.source_type).outcome
