from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import ApiError
from sessions_app.archiver import session_archive
from sessions_app.models import ChatSession, Message
from sessions_app.queries import message_count_annotation
from sessions_app.services import session_delete


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["id", "created_at", "role", "author", "is_bot", "content", "external_id"]
    readonly_fields = fields
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest, obj: ChatSession | None = None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = [
        "key",
        "platform",
        "channel",
        "status",
        "skip_reason",
        "message_count",
        "last_active_at",
        "archived_at",
        "source",
    ]
    list_filter = ["status", "platform", "skip_reason"]
    search_fields = ["key", "title", "channel", "thread"]
    readonly_fields = [
        "version",
        "last_active_at",
        "created_at",
        "archived_through_id",
        "archived_at",
        "archived_message_count",
        "archive_attempts",
        "skip_reason",
        "archive_note",
        "source",
        "duplicate_of",
        "status",
    ]
    inlines = [MessageInline]
    actions = ["archive_now", "delete_with_knowledge"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatSession]:
        return (
            super()
            .get_queryset(request)
            .annotate(n_messages=message_count_annotation())
            .select_related("source")
        )

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Django's bulk delete would leave the archived knowledge behind.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: ChatSession | None = None) -> bool:
        # Deleting goes through the action, which removes the knowledge too.
        return False

    def has_delete_with_knowledge_permission(self, request: HttpRequest) -> bool:
        # Django's delete stays off (has_delete_permission); the model's delete permission
        # allows the action that also removes the knowledge.
        return request.user.has_perm("sessions_app.delete_chatsession")

    @admin.display(description="Messages", ordering="n_messages")
    def message_count(self, session: ChatSession) -> int:
        return session.n_messages

    @admin.action(description="Archive now into knowledge", permissions=["change"])
    def archive_now(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        done: dict[str, int] = {}
        for session in queryset:
            try:
                outcome = session_archive(session_id=session.pk).outcome
            except ApiError as exc:
                self.message_user(request, f"{session.key}: {exc.message}", messages.WARNING)
                continue
            done[outcome] = done.get(outcome, 0) + 1
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(done.items()))
        self.message_user(request, f"Archive: {summary or 'nothing done'}.", messages.SUCCESS)

    @admin.action(
        description="Delete sessions with their messages and archived knowledge",
        permissions=["delete_with_knowledge"],
    )
    def delete_with_knowledge(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        sessions = messages_deleted = sources = 0
        for session in queryset:
            counts = session_delete(session=session)
            sessions += 1
            messages_deleted += counts["messages"]
            sources += counts["sources"]
        self.message_user(
            request,
            f"Deleted {sessions} session(s), {messages_deleted} message(s) and "
            f"{sources} knowledge source(s).",
            messages.SUCCESS,
        )
