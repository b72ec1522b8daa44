from django.contrib import admin
from django.urls import reverse

from line_channel.models import LineEvent, LineReply, LineStaffUser
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
