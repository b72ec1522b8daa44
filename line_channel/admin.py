from django.contrib import admin
from django.urls import reverse

from core.admin import ReadOnlyAdmin
from line_channel.models import LineEvent, LineIntake, LineReply, LineStaffUser, LineSyncRun
from line_channel.services import line_enabled


class LineReplyInline(admin.TabularInline):
    model = LineReply
    extra = 0
    can_delete = False
    fields = ["status", "attempts", "last_error", "messages", "sent_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LineEvent)
class LineEventAdmin(admin.ModelAdmin):
    """What LINE sent, read-only. The list's header says the webhook URL to paste into the LINE
    console, or that the channel is off."""

    list_display = ["webhook_event_id", "kind", "message_kind", "user_id", "status", "received_at"]
    list_filter = ["kind", "message_kind", "status"]
    search_fields = ["webhook_event_id", "user_id"]
    readonly_fields = [f.name for f in LineEvent._meta.fields]
    inlines = [LineReplyInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        url = request.build_absolute_uri(reverse("line_channel:webhook"))
        status = (
            f"Webhook URL for the LINE console: {url}"
            if line_enabled()
            else "The LINE channel is off: set LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN."
        )
        return super().changelist_view(request, {**(extra_context or {}), "title": status})


@admin.register(LineStaffUser)
class LineStaffUserAdmin(admin.ModelAdmin):
    list_display = ["name", "user_id", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "user_id"]


@admin.register(LineSyncRun)
class LineSyncRunAdmin(ReadOnlyAdmin):
    """Each staff `sync`, read-only: what it found and the push it sent."""

    list_display = [
        "created_at",
        "user_id",
        "status",
        "total",
        "added_count",
        "updated_count",
        "unchanged_count",
        "failed_count",
        "pending_chunks",
        "finished_at",
    ]
    list_filter = ["status"]
    search_fields = ["user_id"]
    readonly_fields = [f.name for f in LineSyncRun._meta.fields]

    @admin.display(description="Added")
    def added_count(self, run: LineSyncRun) -> int:
        return len(run.added)

    @admin.display(description="Updated")
    def updated_count(self, run: LineSyncRun) -> int:
        return len(run.updated)

    @admin.display(description="Unchanged")
    def unchanged_count(self, run: LineSyncRun) -> int:
        return len(run.unchanged)

    @admin.display(description="Failed")
    def failed_count(self, run: LineSyncRun) -> int:
        return len(run.failed)


@admin.register(LineIntake)
class LineIntakeAdmin(ReadOnlyAdmin):
    """Each guided fault report on LINE, read-only: how far it got, the card it filed, the
    diagnosis layer the customer got and whether they said it solved the problem."""

    list_display = [
        "started_at",
        "user_id",
        "language",
        "status",
        "step",
        "card",
        "diagnosis_layer",
        "customer_solved",
    ]
    list_filter = ["status", "language", "diagnosis_layer", "customer_solved"]
    search_fields = ["user_id", "brand", "lock_model", "error_code"]
    readonly_fields = [f.name for f in LineIntake._meta.fields]
