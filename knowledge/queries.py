"""Reads shared by the API, the pages and the admin."""

from django.db.models import Count, Q, QuerySet

from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource


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
