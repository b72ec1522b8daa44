"""The knowledge quality loop: evaluation sets and their cases, evaluation runs and per-case
results, and retrieval tests (one query tried against several settings, kept as history)."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class EvalSet(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_scheduled = models.BooleanField(
        default=False, help_text="Evaluated every day by the schedule (all modes, answers)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "evaluation set"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CaseOrigin(models.TextChoices):
    MANUAL = "manual", "By hand"
    ANSWER = "answer", "Not-helpful answer"
    GAP = "gap", "Content gap"
    CARD = "card", "Resolved problem card"
    RETRIEVAL_TEST = "retrieval", "Retrieval test"
    IMPORT = "import", "JSONL import"
    DEMO = "demo", "Demo data"


class EvalCaseQuerySet(models.QuerySet):
    def active(self) -> "EvalCaseQuerySet":
        return self.filter(is_active=True)


class EvalCase(models.Model):
    """A question and what a good retrieval returns for it. No expected passage means the right
    answer is a refusal ("nothing relevant found")."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="cases")
    question = models.TextField()
    language = models.CharField(max_length=8)  # en, ja or zh (knowledge.text.detect_language)
    tags = models.JSONField(default=list, blank=True)
    expected_keywords = models.JSONField(
        default=list, blank=True, help_text="Words a good answer contains (case-insensitive)."
    )
    origin = models.CharField(max_length=12, choices=CaseOrigin.choices, default=CaseOrigin.MANUAL)
    # Where the case came from, e.g. "answer:12", "card:7", "gap:<normalized question>".
    origin_ref = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EvalCaseQuerySet.as_manager()

    class Meta:
        verbose_name = "evaluation case"
        ordering = ["eval_set", "id"]
        constraints = [
            # One click on the same answer or card twice does not make two cases.
            models.UniqueConstraint(
                fields=["eval_set", "origin", "origin_ref"],
                condition=~models.Q(origin_ref=""),
                name="evalcase_one_per_origin",
            )
        ]

    def __str__(self) -> str:
        return self.question[:80]

    @property
    def expects_refusal(self) -> bool:
        return not self.expected.exists()


class EvalExpected(models.Model):
    """One passage a case expects: a whole source (any of its chunks counts) or one chunk, with
    a graded relevance (1 relevant … 3 the best answer). Title and URI are kept so a case whose
    source was deleted still says what it expected."""

    case = models.ForeignKey(EvalCase, on_delete=models.CASCADE, related_name="expected")
    source = models.ForeignKey(
        "knowledge.KnowledgeSource", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    chunk = models.ForeignKey(
        "knowledge.KnowledgeChunk",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source_title = models.CharField(max_length=500)
    source_uri = models.CharField(max_length=2000, blank=True)
    chunk_ordinal = models.PositiveIntegerField(null=True, blank=True)
    grade = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )

    class Meta:
        verbose_name = "expected passage"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(grade__gte=1, grade__lte=3), name="evalexpected_grade_1_to_3"
            )
        ]

    def __str__(self) -> str:
        where = f" #{self.chunk_ordinal}" if self.chunk_ordinal is not None else ""
        return f"{self.source_title}{where} (grade {self.grade})"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class EvalRun(models.Model):
    """One evaluation of a set: every active case searched in each mode (and answered once),
    with the settings in force kept beside the metrics so runs can be compared as a trend."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="runs")
    modes = models.JSONField(default=list)
    use_reranker = models.BooleanField(default=False)
    use_feedback = models.BooleanField(default=True)
    check_answers = models.BooleanField(default=True)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # Embedding model, chunking, thresholds, reranker… as they were for this run.
    config = models.JSONField(default=dict, blank=True)
    # {mode: {"all": {...}, "<language>": {...}}} and {"answers": {...}}.
    metrics = models.JSONField(default=dict, blank=True)
    case_count = models.PositiveIntegerField(default=0)
    done_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "evaluation run"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.eval_set} run {self.pk} ({self.status})"


class EvalResult(models.Model):
    """One case in one mode of a run: what came back and how it scored."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvalCase, on_delete=models.SET_NULL, null=True, related_name="results")
    mode = models.CharField(max_length=8)  # vector, keyword, hybrid, or "answer"
    question = models.TextField()
    language = models.CharField(max_length=8)
    # [{"chunk_id", "source_id", "score", "grade"}] in rank order (top 10).
    hits = models.JSONField(default=list)
    first_relevant_rank = models.PositiveSmallIntegerField(null=True, blank=True)
    recall_at_1 = models.FloatField(null=True, blank=True)
    recall_at_3 = models.FloatField(null=True, blank=True)
    recall_at_10 = models.FloatField(null=True, blank=True)
    reciprocal_rank = models.FloatField(null=True, blank=True)
    ndcg_at_10 = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    # Answer checks (mode "answer"): None where the check does not apply to the case.
    answer_text = models.TextField(blank=True)
    answer = models.ForeignKey(
        "knowledge.Answer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    keywords_found = models.JSONField(default=list, blank=True)
    keywords_ok = models.BooleanField(null=True)
    citations_valid = models.BooleanField(null=True)
    refusal_ok = models.BooleanField(null=True)
    error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = "evaluation result"
        ordering = ["run", "mode", "id"]
        indexes = [models.Index(fields=["run", "mode"])]

    def __str__(self) -> str:
        return f"{self.mode}: {self.question[:60]}"


class RetrievalTest(models.Model):
    """One query tried side by side in several modes/settings (page or API), kept as history."""

    query = models.TextField()
    config = models.JSONField(default=dict)  # what was compared: modes, top_k, reranker…
    # {"columns": [{label, variant, hits, took_ms, error…}]}: a list, jsonb keeps no key order.
    results = models.JSONField(default=dict)
    channel = models.CharField(max_length=8)  # web or api
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "core.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.query[:80]


class RetrievalTestPreference(models.Model):
    """The retrieval test page's settings, kept per user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="retrieval_test_preference"
    )
    config = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Retrieval test settings of {self.user}"
