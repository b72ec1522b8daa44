from django.contrib import admin, messages

from core.errors import ApiError
from quality.models import EvalCase, EvalExpected, EvalResult, EvalRun, EvalSet, RetrievalTest
from quality.runs import eval_run_queue


@admin.register(EvalSet)
class EvalSetAdmin(admin.ModelAdmin):
    list_display = ["name", "is_scheduled", "created_at"]
    list_filter = ["is_scheduled"]
    search_fields = ["name"]
    actions = ["evaluate"]

    @admin.action(
        description="Evaluate the selected sets (all modes, answers)", permissions=["run"]
    )
    def evaluate(self, request, queryset):
        for eval_set in queryset:
            try:
                run = eval_run_queue(eval_set=eval_set, triggered_by=request.user.get_username())
            except ApiError as exc:
                self.message_user(request, f"{eval_set}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{eval_set}: run {run.pk} queued.")

    def has_run_permission(self, request):
        return request.user.has_perm("quality.add_evalrun")


class EvalExpectedInline(admin.TabularInline):
    model = EvalExpected
    extra = 1
    raw_id_fields = ["source", "chunk"]
    fields = ["source", "chunk", "grade", "source_title", "source_uri", "chunk_ordinal"]
    readonly_fields = ["source_title", "source_uri", "chunk_ordinal"]


@admin.register(EvalCase)
class EvalCaseAdmin(admin.ModelAdmin):
    list_display = ["question", "eval_set", "language", "origin", "is_active"]
    list_filter = ["eval_set", "language", "origin", "is_active"]
    search_fields = ["question"]
    inlines = [EvalExpectedInline]
    readonly_fields = ["origin", "origin_ref", "created_by", "created_at", "updated_at"]

    def save_formset(self, request, form, formset, change):
        # Title, URI and ordinal are snapshots of the chosen source/chunk (kept if it is deleted).
        for row in formset.save(commit=False):
            if row.chunk_id and not row.source_id:
                row.source = row.chunk.source
            if row.source_id:
                row.source_title = row.source.title
                row.source_uri = row.source.uri or ""
            row.chunk_ordinal = row.chunk.ordinal if row.chunk_id else None
            row.save()
        for row in formset.deleted_objects:
            row.delete()


class EvalResultInline(admin.TabularInline):
    model = EvalResult
    extra = 0
    can_delete = False
    fields = [
        "mode",
        "question",
        "first_relevant_rank",
        "recall_at_10",
        "ndcg_at_10",
        "keywords_ok",
        "citations_valid",
        "refusal_ok",
        "error_code",
    ]
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "eval_set",
        "status",
        "use_reranker",
        "use_feedback",
        "created_at",
        "finished_at",
    ]
    list_filter = ["eval_set", "status", "use_reranker", "use_feedback"]
    readonly_fields = [f.name for f in EvalRun._meta.fields]
    inlines = [EvalResultInline]
    actions = ["run_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(
        description="Run the selected runs' sets again with the same options", permissions=["run"]
    )
    def run_again(self, request, queryset):
        for run in queryset.select_related("eval_set"):
            try:
                new = eval_run_queue(
                    eval_set=run.eval_set,
                    modes=run.modes,
                    use_reranker=run.use_reranker,
                    use_feedback=run.use_feedback,
                    check_answers=run.check_answers,
                    triggered_by=request.user.get_username(),
                )
            except ApiError as exc:
                self.message_user(request, f"{run.eval_set}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{run.eval_set}: run {new.pk} queued.")

    def has_run_permission(self, request):
        return request.user.has_perm("quality.add_evalrun")


@admin.register(RetrievalTest)
class RetrievalTestAdmin(admin.ModelAdmin):
    list_display = ["query", "channel", "user", "api_key", "created_at"]
    list_filter = ["channel"]
    search_fields = ["query"]
    readonly_fields = [f.name for f in RetrievalTest._meta.fields]

    def has_add_permission(self, request):
        return False
