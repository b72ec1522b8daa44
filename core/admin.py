from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.models import ApiKey, ApiScope, ThresholdSetting
from core.services import ApiKeyError, api_key_create, api_key_revoke


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only: listed and shown, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else [*self.readonly_fields, "name"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return ["name", "scopes"] if obj is None else ["name", *self.readonly_fields]

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            return
        try:
            api_key, raw_key = api_key_create(
                name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
            )
        except ApiKeyError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = api_key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"API key created. Copy it now, it is not shown again: {raw_key}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(ThresholdSetting)
class ThresholdSettingAdmin(admin.ModelAdmin):
    """The history of threshold changes, read-only: a change is made on the calibration page
    (quality/views/calibration.py), through core.thresholds, so that every one is a row."""

    list_display = [
        "created_at",
        "kind",
        "embedding_model",
        "brand_key",
        "value",
        "previous_value",
        "is_active",
        "set_by",
    ]
    list_filter = ["kind", "is_active", "embedding_model"]
    search_fields = ["embedding_model", "brand_key", "set_by", "reason"]
    readonly_fields = [
        "kind",
        "embedding_model",
        "brand_key",
        "value",
        "previous_value",
        "reason",
        "evidence",
        "set_by",
        "is_active",
        "created_at",
        "deactivated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: ThresholdSetting | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: ThresholdSetting | None = None
    ) -> bool:
        return False
