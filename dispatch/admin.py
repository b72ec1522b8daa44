"""Dispatch in the admin: cards, technicians, orders and the money around them. Rows whose rules
live in services (a card's text and status, an order's flow, lines, settlements, invoices) are
read-only here; actions call those services, and the audit log cannot be edited at all."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from core.errors import ApiError
from dispatch.billing import order_invoice, order_totals
from dispatch.diagnosis import problem_card_diagnose
from dispatch.feedback import case_feedback_restore, case_feedback_revert
from dispatch.models import (
    CaseFeedback,
    DiagnosisRecord,
    Invoice,
    OrderEvent,
    OrderLine,
    ProblemCard,
    ProblemCardPhoto,
    QuoteItem,
    ServiceOrder,
    Settlement,
    Technician,
    TechnicianSkill,
)
from dispatch.orders import Actor, order_cancel, order_create
from dispatch.services import problem_card_case_curate


def _flat(fields: list) -> list[str]:
    return [name for row in fields for name in (row if isinstance(row, tuple) else (row,))]


def _each(modeladmin, request, queryset, verb: str, call) -> None:
    """Call the service for each selected row; report what was done and every refusal."""
    done = 0
    for row in queryset:
        try:
            call(row)
        except ApiError as error:
            modeladmin.message_user(request, f"{row}: {error.message}", messages.ERROR)
        else:
            done += 1
    if done:
        modeladmin.message_user(request, f"{verb} {done} of {queryset.count()}.")


# --- Problem cards --------------------------------------------------------------------------------


class PhotoInline(ReadOnlyInline):
    model = ProblemCardPhoto
    fields = ["image", "content_type", "size", "uploaded_at"]
    readonly_fields = fields


class DiagnosisInline(ReadOnlyInline):
    model = DiagnosisRecord
    fields = ["created_at", "layer", "reason", "best_similarity", "threshold"]
    readonly_fields = fields


class OrderOfCardInline(ReadOnlyInline):
    model = ServiceOrder
    fields = ["status", "technician", "scheduled_start", "completed_at"]
    readonly_fields = fields


class CaseFeedbackInline(ReadOnlyInline):
    model = CaseFeedback
    fields = ["created_at", "reason", "origin_ref", "delta", "reverted_at", "reverted_by"]
    readonly_fields = fields


@admin.register(ProblemCard)
class ProblemCardAdmin(ReadOnlyAdmin):
    """Reported through the API (normalised, embedded, resolved by services): read-only here."""

    list_display = [
        "__str__",
        "customer_name",
        "service_area",
        "error_code",
        "status",
        "created_at",
    ]
    list_filter = ["status", "symptom", "is_case_enabled", "brand_key"]
    search_fields = ["customer_name", "brand", "lock_model", "error_code", "description"]
    date_hierarchy = "created_at"
    fields = [
        "status",
        "version",
        ("customer_name", "customer_phone", "customer_line_user_id"),
        ("address", "service_area"),
        ("brand", "lock_model", "symptom", "error_code"),
        "description",
        "diagnosis",
        "resolution",
        "root_cause",
        "parts_used",
        ("resolved_by", "resolved_at"),
        ("is_case_enabled", "feedback_boost"),
        ("created_at", "updated_at"),
    ]
    readonly_fields = _flat(fields)
    inlines = [OrderOfCardInline, DiagnosisInline, CaseFeedbackInline, PhotoInline]
    actions = ["diagnose", "dispatch", "disable_case", "enable_case"]

    # Read-only rows, but each action asks for the permission its page button needs
    # (core/permissions.py): a viewer sees no action at all.
    def has_diagnose_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.change_problemcard")

    def has_dispatch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.add_serviceorder")

    def has_curate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.curate_problemcard")

    @admin.action(
        description="Disable as a case (misleading: diagnosis, search and ask skip it)",
        permissions=["curate"],
    )
    def disable_case(self, request, queryset):
        _each(
            self,
            request,
            queryset,
            "Disabled as cases",
            lambda card: problem_card_case_curate(card_id=card.pk, is_case_enabled=False),
        )

    @admin.action(description="Enable as a case again", permissions=["curate"])
    def enable_case(self, request, queryset):
        _each(
            self,
            request,
            queryset,
            "Enabled as cases",
            lambda card: problem_card_case_curate(card_id=card.pk, is_case_enabled=True),
        )

    @admin.action(
        description="Diagnose selected cards (three layers, recorded)", permissions=["diagnose"]
    )
    def diagnose(self, request, queryset):
        _each(
            self,
            request,
            queryset,
            "Diagnosed",
            lambda card: problem_card_diagnose(card_id=card.pk),
        )

    @admin.action(
        description="Open a service order for each selected card (its address)",
        permissions=["dispatch"],
    )
    def dispatch(self, request, queryset):
        actor = Actor.of_user(request.user)
        _each(
            self,
            request,
            queryset,
            "Opened orders for",
            lambda card: order_create(card_id=card.pk, actor=actor),
        )


@admin.register(CaseFeedback)
class CaseFeedbackAdmin(ReadOnlyAdmin):
    """Outcome signals on cases (dispatch/feedback.py): append-only; a curator reverts a signal
    (it stays listed, its case loses its effect) or restores it."""

    list_display = [
        "id",
        "card",
        "reason",
        "origin_ref",
        "delta",
        "created_at",
        "reverted_at",
        "reverted_by",
        "revert_cause",
    ]
    list_filter = ["reason", "revert_cause", ("reverted_at", admin.EmptyFieldListFilter)]
    search_fields = ["origin_ref", "card__description"]
    list_select_related = ["card"]
    readonly_fields = [f.name for f in CaseFeedback._meta.fields]
    fields = readonly_fields
    actions = ["revert", "restore"]

    def has_revert_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.change_casefeedback")

    @admin.action(description="Revert selected signals", permissions=["revert"])
    def revert(self, request, queryset):
        count = case_feedback_revert(
            signal_ids=queryset.values_list("pk", flat=True), by=request.user.get_username()
        )
        self.message_user(request, f"Reverted {count} signal(s); their cases' boosts follow.")

    @admin.action(description="Restore selected signals", permissions=["revert"])
    def restore(self, request, queryset):
        count = case_feedback_restore(signal_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Restored {count} signal(s); their cases' boosts follow.")


@admin.register(DiagnosisRecord)
class DiagnosisRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "card",
        "layer",
        "best_similarity",
        "threshold",
        "embedding_model",
        "created_at",
    ]
    list_filter = ["layer", "embedding_model"]
    search_fields = ["reason", "card__description"]
    list_select_related = ["card"]


@admin.register(ProblemCardPhoto)
class ProblemCardPhotoAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "content_type", "size", "uploaded_at"]
    list_filter = ["content_type"]
    search_fields = ["card__customer_name", "image"]


# --- Technicians ----------------------------------------------------------------------------------


class SkillInline(admin.TabularInline):
    model = TechnicianSkill
    extra = 1
    fields = ["brand_key", "symptom", "level"]


@admin.register(Technician)
class TechnicianAdmin(admin.ModelAdmin):
    list_display = ["name", "phone", "areas", "rating", "daily_capacity", "is_active"]
    list_filter = ["is_active", "skills__brand_key"]
    search_fields = ["name", "phone", "service_areas"]
    inlines = [SkillInline]

    @admin.display(description="Service areas")
    def areas(self, technician: Technician) -> str:
        return ", ".join(technician.service_areas)


@admin.register(TechnicianSkill)
class TechnicianSkillAdmin(admin.ModelAdmin):
    list_display = ["technician", "brand_key", "symptom", "level"]
    list_filter = ["brand_key", "symptom", "level"]
    search_fields = ["technician__name", "brand_key"]
    list_select_related = ["technician"]


# --- Service orders -------------------------------------------------------------------------------


class LineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["item", "description", "quantity", "unit_price", "amount", "created_at"]
    readonly_fields = fields


class EventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["created_at", "from_status", "to_status", "actor_label", "note"]
    readonly_fields = fields
    show_change_link = False


@admin.register(ServiceOrder)
class ServiceOrderAdmin(ReadOnlyAdmin):
    """Orders move only through their services (API or the actions here): every change is in the
    audit log."""

    list_display = [
        "__str__",
        "card",
        "technician",
        "status",
        "scheduled_start",
        "eta",
        "completed_at",
    ]
    list_filter = ["status", "technician", "scheduled_start"]
    search_fields = ["address", "card__customer_name", "technician__name", "work_done"]
    list_select_related = ["card", "technician"]
    date_hierarchy = "scheduled_start"
    fields = [
        ("status", "version"),
        "card",
        "technician",
        "address",
        ("latitude", "longitude"),
        ("scheduled_start", "scheduled_end", "eta"),
        "work_done",
        "parts_used",
        ("completed_at", "diagnosis_matched"),
        "totals",
        ("created_at", "updated_at"),
    ]
    readonly_fields = _flat(fields)
    inlines = [LineInline, EventInline]
    actions = ["cancel", "invoice_to_customer"]

    def has_order_status_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.change_order_status")

    def has_invoice_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dispatch.add_invoice")

    @admin.display(description="Totals")
    def totals(self, order: ServiceOrder) -> str:
        totals = order_totals(order=order)
        return (
            f"subtotal {totals.subtotal} + tax {totals.tax} ({totals.tax_rate:%}) = {totals.total}"
        )

    @admin.action(
        description="Cancel selected orders (customer called it off)", permissions=["order_status"]
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = Actor.of_user(request.user)
        _each(
            self,
            request,
            queryset,
            "Cancelled",
            lambda order: order_cancel(
                order_id=order.pk,
                version=order.version,
                actor=actor,
                note="Called off by the customer (admin).",
            ),
        )

    @admin.action(
        description="Invoice selected completed orders to the card's customer",
        permissions=["invoice"],
    )
    def invoice_to_customer(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = Actor.of_user(request.user)
        _each(
            self,
            request,
            queryset.select_related("card"),
            "Invoiced",
            lambda order: order_invoice(
                order_id=order.pk, buyer_name=order.card.customer_name, actor=actor
            ),
        )


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    """The audit log: nobody edits or deletes it."""

    list_display = ["created_at", "order", "from_status", "to_status", "actor_label", "note"]
    list_filter = ["to_status", "from_status"]
    search_fields = ["actor_label", "note", "order__id"]
    list_select_related = ["order"]
    date_hierarchy = "created_at"


# --- Money ----------------------------------------------------------------------------------------


@admin.register(QuoteItem)
class QuoteItemAdmin(admin.ModelAdmin):
    """The price list. Lines copy an item's name and price, so editing one changes no past
    quote; retire an item by deactivating it (lines refer to it)."""

    list_display = ["code", "name", "unit_price", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["code", "name"]
    actions = ["activate", "deactivate"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Activate selected items", permissions=["change"])
    def activate(self, request, queryset):
        self.message_user(request, f"Activated {queryset.update(is_active=True)} item(s).")

    @admin.action(description="Deactivate selected items (no new lines)", permissions=["change"])
    def deactivate(self, request, queryset):
        self.message_user(request, f"Deactivated {queryset.update(is_active=False)} item(s).")


@admin.register(OrderLine)
class OrderLineAdmin(ReadOnlyAdmin):
    list_display = ["order", "item", "quantity", "unit_price", "amount", "created_at"]
    list_filter = ["item"]
    search_fields = ["description", "item__code", "order__id"]
    list_select_related = ["order", "item"]


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ["order", "technician", "basis", "share_percent", "amount", "settled_at"]
    list_filter = ["basis", "technician"]
    search_fields = ["technician__name", "settled_by", "order__id"]
    list_select_related = ["order", "technician"]
    date_hierarchy = "settled_at"


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "issued_on", "buyer_name", "buyer_tax_id", "subtotal", "tax", "total"]
    list_filter = ["issued_on", "tax_rate"]
    search_fields = ["number", "buyer_name", "buyer_tax_id"]
    date_hierarchy = "issued_on"
