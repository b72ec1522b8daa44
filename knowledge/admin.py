from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from knowledge.answer.answering import answer_feedback
from knowledge.embed.pipeline import dead_letters_retry
from knowledge.feedback import chunk_feedback_restore, chunk_feedback_revert
from knowledge.ingest.ingestion import source_rechunk
from knowledge.models import (
    Answer,
    AnswerSource,
    ChunkFeedback,
    DeadLetterChunk,
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
)
from knowledge.services import (
    CurationError,
    chunk_update,
    chunks_mark_for_embedding,
    source_delete,
    sources_set_enabled,
)


class ChunkInline(admin.TabularInline):
    model = KnowledgeChunk
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "ordinal",
        "preview",
        "token_count",
        "location",
        "enabled",
        "pinned",
        "embedding_status",
    ]
    readonly_fields = fields
    ordering = ["ordinal"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Text")
    def preview(self, chunk: KnowledgeChunk) -> str:
        return chunk.content[:160] + ("…" if len(chunk.content) > 160 else "")


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "source_type",
        "status",
        "enabled",
        "chunk_count",
        "embedded_count",
        "version",
        "fetched_at",
    ]
    list_filter = ["source_type", "status", "enabled"]
    search_fields = ["title", "uri", "metadata"]
    readonly_fields = [
        "content_hash",
        "byte_size",
        "status",
        "error_code",
        "error_message",
        "version",
        "fetched_at",
        "created_at",
        "updated_at",
    ]
    fields = [
        "title",
        "source_type",
        "uri",
        "metadata",
        "enabled",
        "superseded_by",
        "fetch_interval",
        *readonly_fields,
    ]
    raw_id_fields = ["superseded_by"]
    inlines = [ChunkInline]
    actions = ["enable", "disable", "rechunk", "reembed", "delete_with_chunks"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_chunks=Count("chunks"),
                n_embedded=Count("chunks", filter=Q(chunks__embedding_status=EmbeddingStatus.DONE)),
            )
        )

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_with_chunks (calls the service)
        return actions

    @admin.display(description="Chunks", ordering="n_chunks")
    def chunk_count(self, source) -> int:
        return source.n_chunks

    @admin.display(description="Embedded", ordering="n_embedded")
    def embedded_count(self, source) -> int:
        return source.n_embedded

    @admin.action(description="Enable selected sources", permissions=["change"])
    def enable(self, request, queryset):
        self.message_user(
            request, f"Enabled {sources_set_enabled(sources=queryset, enabled=True)} source(s)."
        )

    @admin.action(description="Disable selected sources", permissions=["change"])
    def disable(self, request, queryset):
        self.message_user(
            request, f"Disabled {sources_set_enabled(sources=queryset, enabled=False)} source(s)."
        )

    @admin.action(description="Re-chunk selected sources", permissions=["change"])
    def rechunk(self, request, queryset):
        total = sum(source_rechunk(source=source).chunks for source in queryset)
        self.message_user(request, f"Re-chunked {queryset.count()} source(s) into {total} chunks.")

    @admin.action(description="Re-embed selected sources", permissions=["change"])
    def reembed(self, request, queryset):
        count = chunks_mark_for_embedding(chunks=KnowledgeChunk.objects.filter(source__in=queryset))
        self.message_user(request, f"Queued {count} chunk(s) for embedding.")

    @admin.action(description="Delete selected sources with their chunks", permissions=["delete"])
    def delete_with_chunks(self, request, queryset):
        count = 0
        for source in queryset:
            source_delete(source=source)
            count += 1
        self.message_user(request, f"Deleted {count} source(s).")


class ChunkAdminForm(forms.ModelForm):
    class Meta:
        model = KnowledgeChunk
        fields = ["content", "enabled", "pinned", "valid_until"]


@admin.register(KnowledgeChunk)
class KnowledgeChunkAdmin(admin.ModelAdmin):
    form = ChunkAdminForm
    list_display = [
        "__str__",
        "source",
        "ordinal",
        "token_count",
        "enabled",
        "pinned",
        "feedback_boost",
        "embedding_status",
        "valid_until",
    ]
    list_filter = ["enabled", "pinned", "embedding_status", "source__source_type"]
    search_fields = ["content", "source__title"]
    list_select_related = ["source"]
    readonly_fields = [
        "source",
        "ordinal",
        "token_count",
        "location",
        "content_hash",
        "feedback_boost",
        "embedding_status",
        "embedding_model",
        "embedding_attempts",
        "embedding_last_error",
        "embedded_at",
        "feedback_signals",
    ]
    fields = ["content", "enabled", "pinned", "valid_until", *readonly_fields]
    actions = ["reembed"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        # Through the service, so new text drops the stale vector and queues re-embedding.
        original = KnowledgeChunk.objects.get(pk=obj.pk)
        try:
            chunk_update(
                chunk=original,
                content=form.cleaned_data["content"],
                enabled=form.cleaned_data["enabled"],
                pinned=form.cleaned_data["pinned"],
                valid_until=form.cleaned_data["valid_until"],
            )
        except CurationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    # The signals as a read-only list, not an inline formset: the chunk's form stays the one the
    # edit service takes, and signals change only through their own list's actions.
    @admin.display(description="Feedback signals")
    def feedback_signals(self, chunk: KnowledgeChunk) -> str:
        signals = list(chunk.feedback_signals.all()[:50])
        if not signals:
            return "none"
        url = reverse("admin:knowledge_chunkfeedback_changelist") + f"?chunk__id__exact={chunk.pk}"
        items = format_html_join(
            "",
            "<li>{} · {} · {} ({}){}</li>",
            (
                (
                    f"{signal.created_at:%Y-%m-%d %H:%M}",
                    f"{signal.delta:+.2f}",
                    signal.get_reason_display(),
                    signal.origin_ref,
                    f" · reverted by {signal.reverted_by or '—'}" if signal.is_reverted else "",
                )
                for signal in signals
            ),
        )
        return format_html('<ul>{}</ul><a href="{}">Revert or restore</a>', items, url)

    @admin.action(description="Re-embed selected chunks", permissions=["change"])
    def reembed(self, request, queryset):
        self.message_user(
            request, f"Queued {chunks_mark_for_embedding(chunks=queryset)} chunk(s) for embedding."
        )


@admin.register(ChunkFeedback)
class ChunkFeedbackAdmin(admin.ModelAdmin):
    """Outcome signals on passages (knowledge/feedback.py): append-only; a curator reverts a
    signal (it stays listed, its chunk loses its effect) or restores it."""

    list_display = [
        "id",
        "chunk",
        "source",
        "reason",
        "origin_ref",
        "delta",
        "created_at",
        "reverted_at",
        "reverted_by",
        "revert_cause",
    ]
    list_filter = ["reason", "revert_cause", ("reverted_at", admin.EmptyFieldListFilter)]
    search_fields = ["origin_ref", "source__title"]
    list_select_related = ["source"]
    readonly_fields = [f.name for f in ChunkFeedback._meta.fields]
    fields = readonly_fields
    actions = ["revert", "restore"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # signals change through the actions only

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revert_permission(self, request) -> bool:
        return request.user.has_perm("knowledge.change_chunkfeedback")

    @admin.action(description="Revert selected signals", permissions=["revert"])
    def revert(self, request, queryset):
        count = chunk_feedback_revert(
            signal_ids=queryset.values_list("pk", flat=True), by=request.user.get_username()
        )
        self.message_user(request, f"Reverted {count} signal(s); their chunks' boosts follow.")

    @admin.action(description="Restore selected signals", permissions=["revert"])
    def restore(self, request, queryset):
        count = chunk_feedback_restore(signal_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Restored {count} signal(s); their chunks' boosts follow.")


@admin.register(DeadLetterChunk)
class DeadLetterChunkAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source", "embedding_attempts", "embedding_last_error", "updated_at"]
    list_filter = ["source__source_type"]
    search_fields = ["content", "embedding_last_error", "source__title"]
    list_select_related = ["source"]
    readonly_fields = [
        "source",
        "ordinal",
        "content",
        "embedding_attempts",
        "error_history",
        "embedding_last_error",
    ]
    fields = readonly_fields
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # dead letters are retried or fixed, never deleted from here

    @admin.display(description="Error history")
    def error_history(self, chunk) -> str:
        return (
            "\n".join(
                f"{entry.get('at', '')} attempt {entry.get('attempt', '?')}: {entry.get('error', '')}"
                for entry in chunk.embedding_errors
            )
            or "—"
        )

    @admin.action(
        description="Retry embedding of the selected dead letters", permissions=["change"]
    )
    def retry(self, request, queryset):
        count = dead_letters_retry(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {count} dead letter(s) for embedding.")


# --- Answers ------------------------------------------------------------------------------------


class AnswerSourceInline(admin.TabularInline):
    model = AnswerSource
    extra = 0
    can_delete = False
    fields = [
        "rank",
        "cited",
        "chunk_link",
        "source_title",
        "score",
        "vector_score",
        "keyword_score",
        "passage",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="chunk")
    def chunk_link(self, source: AnswerSource) -> str:
        if source.chunk_id is None:
            return "(deleted)"
        url = reverse("admin:knowledge_knowledgechunk_change", args=[source.chunk_id])
        return format_html('<a href="{}">#{}</a>', url, source.chunk_id)

    @admin.display(description="passage")
    def passage(self, source: AnswerSource) -> str:
        return " ".join(source.quoted_text.split())[:300]


@admin.register(Answer)
class AnswerAdmin(admin.ModelAdmin):
    """The answer log. Not-helpful answers are the curation queue (filter on feedback); their
    retrieved chunks are one click away in the inline."""

    list_display = [
        "id",
        "question_preview",
        "outcome",
        "mode",
        "feedback",
        "latency_ms",
        "channel",
        "created_at",
    ]
    list_filter = ["feedback", "outcome", "mode", "channel", "language"]
    search_fields = ["question", "answer", "feedback_comment"]
    date_hierarchy = "created_at"
    inlines = [AnswerSourceInline]
    actions = ["mark_helpful", "mark_not_helpful"]
    readonly_fields = [
        f.name for f in Answer._meta.fields if f.name not in ("feedback", "feedback_comment")
    ]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="question")
    def question_preview(self, answer: Answer) -> str:
        return answer.question[:80]

    def save_model(self, request, obj: Answer, form, change) -> None:
        if "feedback" in form.changed_data or "feedback_comment" in form.changed_data:
            if obj.feedback:
                answer_feedback(
                    answer=obj,
                    is_helpful=obj.feedback == "helpful",
                    comment=obj.feedback_comment,
                    by=request.user.get_username(),
                )
                return
        super().save_model(request, obj, form, change)

    def _feedback(self, request, queryset, *, is_helpful: bool) -> None:
        for answer in queryset:
            answer_feedback(answer=answer, is_helpful=is_helpful, by=request.user.get_username())
        self.message_user(request, f"{queryset.count()} answer(s) updated.", messages.SUCCESS)

    @admin.action(description="Mark as helpful (leave the curation queue)", permissions=["change"])
    def mark_helpful(self, request, queryset) -> None:
        self._feedback(request, queryset, is_helpful=True)

    @admin.action(description="Mark as not helpful (curation queue)", permissions=["change"])
    def mark_not_helpful(self, request, queryset) -> None:
        self._feedback(request, queryset, is_helpful=False)
