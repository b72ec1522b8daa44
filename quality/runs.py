"""Evaluation runs: every active case of a set searched in each mode, scored (quality.metrics),
and answered once (keywords present, citations valid, refusal when nothing is expected). Results
and the settings in force are stored, so a change of chunking, model, threshold, reranker or
feedback weighting shows as a trend between runs.

`eval_run_queue` stores a queued run and hands it to django-q2 (the button, the admin action, the
schedule); `manage.py evaluate` runs `eval_run_execute` in the foreground with a progress bar.
"""

import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import ApiError
from core.models import ThresholdKind
from core.thresholds import threshold_value
from dispatch.diagnosis import case_threshold
from knowledge.answer.answering import answer_ask, ask_default_similarity, normalize_question
from knowledge.embed.spaces import space_state
from knowledge.models import Answer, AnswerOutcome, EmbeddingStatus, KnowledgeChunk
from knowledge.search.base import MODES, SearchError
from knowledge.search.service import chunk_search
from quality.errors import EVAL_RUN_EMPTY_SET, EVAL_RUN_INVALID_MODE, EVAL_RUN_NO_RERANKER
from quality.metrics import CaseScores, ExpectedItem, RankedHit, case_score, mean_scores
from quality.models import EvalCase, EvalResult, EvalRun, EvalSet, RunStatus
from quality.services import EvalError

EVAL_TOP_K = 10
ANSWER_CHANNEL = "eval"  # answers asked by a run: kept, but out of the gaps and feedback lists
Progress = Callable[[int, int], None]  # (done, total)


def run_modes(mode: str) -> list[str]:
    """`all` or one of the search modes → the modes a run covers."""
    if mode == "all":
        return list(MODES)
    if mode not in MODES:
        raise EvalError(
            EVAL_RUN_INVALID_MODE, f"Unknown mode {mode!r}; use vector, keyword, hybrid or all."
        )
    return [mode]


def eval_run_create(
    *,
    eval_set: EvalSet,
    modes: Sequence[str] = MODES,
    use_reranker: bool = False,
    use_feedback: bool = True,
    check_answers: bool = True,
    triggered_by: str = "",
) -> EvalRun:
    for mode in modes:
        run_modes(mode)
    if use_reranker and not settings.KIOKU_RERANKER:
        raise EvalError(
            EVAL_RUN_NO_RERANKER,
            "No reranker is configured (KIOKU_RERANKER): a run with the reranker cannot run.",
            status=409,
        )
    cases = eval_set.cases.active().count()
    if not cases:
        raise EvalError(
            EVAL_RUN_EMPTY_SET, f"The set {eval_set.name!r} has no active case to run.", status=409
        )
    return EvalRun.objects.create(
        eval_set=eval_set,
        modes=list(dict.fromkeys(modes)),
        use_reranker=use_reranker,
        use_feedback=use_feedback,
        check_answers=check_answers,
        case_count=cases,
        triggered_by=triggered_by[:200],
    )


def eval_run_queue(**options: object) -> EvalRun:
    """A run for the worker (button, admin action, schedule): queued after the commit."""
    from django_q.tasks import async_task

    run = eval_run_create(**options)
    transaction.on_commit(lambda: async_task("quality.tasks.eval_run_execute", run.pk))
    return run


# The daily schedule queues at most one run of a set in this time: its task delivered twice (a
# broker delivers at least once, README "Redis") adds no second run.
SCHEDULED_RUN_SPACING = timedelta(hours=12)


def eval_runs_queue_scheduled() -> list[EvalRun]:
    """One run of every set marked for the schedule that has active cases and no scheduled run
    in the last SCHEDULED_RUN_SPACING."""
    recent = timezone.now() - SCHEDULED_RUN_SPACING
    queued = []
    for eval_set in EvalSet.objects.filter(is_scheduled=True):
        if not eval_set.cases.active().exists():
            continue
        if eval_set.runs.filter(triggered_by="schedule", created_at__gte=recent).exists():
            continue
        queued.append(eval_run_queue(eval_set=eval_set, triggered_by="schedule"))
    return queued


def index_settled_wait(*, max_seconds: float, poll_seconds: float = 2.0) -> bool:
    """Wait while enabled chunks are still pending embedding (a run queued right after an ingest,
    e.g. the demo's first run). True once none is pending; False when the wait ran out."""
    deadline = time.monotonic() + max_seconds
    while KnowledgeChunk.objects.filter(
        enabled=True, embedding_status=EmbeddingStatus.PENDING
    ).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_seconds)
    return True


def run_config(run: EvalRun) -> dict:
    """The settings that change results, as they are for this run."""
    space = space_state().active
    return {
        "embedding_model": space.model,
        "chunking": settings.KIOKU_CHUNKING,
        "rrf_k": settings.KIOKU_SEARCH_RRF_K,
        # The thresholds in force for this model (a calibrated row, else the settings' default).
        "ask_min_similarity": threshold_value(
            kind=ThresholdKind.ASK_SIMILARITY,
            model=space.model,
            default=ask_default_similarity(space.model),
        ),
        "case_min_similarity": case_threshold(space.model),
        "ask_top_k": settings.KIOKU_ASK_TOP_K,
        "reranker": settings.KIOKU_RERANKER if run.use_reranker else "",
        "feedback_weight": settings.KIOKU_FEEDBACK_WEIGHT if run.use_feedback else 0.0,
        "top_k": EVAL_TOP_K,
    }


def eval_run_execute(*, run_id: int, progress: Progress | None = None) -> EvalRun:
    """Run (or re-run) one stored run. A failure marks it failed with the reason; a case whose
    search is refused (e.g. a question too long) is a result with its error code, not a failure."""
    run = EvalRun.objects.select_related("eval_set").get(pk=run_id)
    run.results.all().delete()
    run.status = RunStatus.RUNNING
    run.started_at = timezone.now()
    run.done_count = 0
    run.error = ""
    run.config = run_config(run)
    run.save()
    cases = list(run.eval_set.cases.active().prefetch_related("expected").order_by("id"))
    run.case_count = len(cases)
    total = len(cases) * (len(run.modes) + int(run.check_answers))
    done = 0
    try:
        for mode in run.modes:
            results = []
            for case in cases:
                results.append(_search_result(run, case, mode))
                done += 1
                if progress:
                    progress(done, total)
            EvalResult.objects.bulk_create(results)
        if run.check_answers:
            for case in cases:
                EvalResult.objects.create(**_answer_result(run, case))
                done += 1
                if progress:
                    progress(done, total)
        run.metrics = run_metrics(run)
        run.status = RunStatus.DONE
    except Exception as exc:  # the run records why it stopped; the worker logs the trace
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = timezone.now()
        run.done_count = done
        run.save()
        raise
    run.done_count = done
    run.finished_at = timezone.now()
    run.save()
    return run


def expected_items(case: EvalCase) -> list[ExpectedItem]:
    return [
        ExpectedItem(source_id=row.source_id, chunk_id=row.chunk_id, grade=row.grade)
        for row in case.expected.all()
        if row.source_id is not None or row.chunk_id is not None
    ]


def _search_result(run: EvalRun, case: EvalCase, mode: str) -> EvalResult:
    result = EvalResult(
        run=run, case=case, mode=mode, question=case.question, language=case.language
    )
    expected = expected_items(case)
    started = time.perf_counter()
    try:
        found = chunk_search(
            case.question,
            mode=mode,
            top_k=EVAL_TOP_K,
            rerank=run.use_reranker,
            use_feedback=run.use_feedback,
        )
    except SearchError as exc:
        result.error_code = exc.code
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result
    result.latency_ms = found.took_ms
    hits = [RankedHit(chunk_id=hit.chunk_id, source_id=hit.source_id) for hit in found.hits]
    if expected:
        scores = case_score(hits, expected, k=EVAL_TOP_K)
        _store_scores(result, scores)
        gains = scores.gains
    else:
        gains = (0,) * len(hits)
    result.hits = [
        {
            "chunk_id": hit.chunk_id,
            "source_id": hit.source_id,
            "title": hit.source_title,
            "score": round(hit.score, 6),
            "grade": gain,
        }
        for hit, gain in zip(found.hits, gains, strict=True)
    ]
    return result


def _store_scores(result: EvalResult, scores: CaseScores) -> None:
    result.first_relevant_rank = scores.first_relevant_rank
    result.recall_at_1 = scores.recall_at_1
    result.recall_at_3 = scores.recall_at_3
    result.recall_at_10 = scores.recall_at_10
    result.reciprocal_rank = scores.reciprocal_rank
    result.ndcg_at_10 = scores.ndcg_at_10


CITATION_MARK = re.compile(r"\[(\d{1,3})\]")


def keywords_found(text: str, keywords: Sequence[str]) -> list[str]:
    """Expected keywords present in an answer, folded as the content-gap list folds questions
    (case, width, punctuation, spacing)."""
    folded = normalize_question(text)
    padded = f" {folded} "
    found = []
    for word in keywords:
        key = normalize_question(word)
        # Latin words match whole words ("door" is not in "doorbell"); CJK has no spaces.
        if key and (f" {key} " in padded if key.isascii() else key in folded):
            found.append(word)
    return found


def citations_are_valid(answer: Answer) -> bool | None:
    """Every [n] in the answer points to a passage it was given, marked cited, whose chunk still
    exists; an answer that states something cites at least one. None: no answer to check."""
    if answer.outcome != AnswerOutcome.ANSWERED:
        return None
    sources = {source.rank: source for source in answer.sources.all()}
    marks = {int(n) for n in CITATION_MARK.findall(answer.answer)}
    if not marks:
        return False
    return all(n in sources and sources[n].cited and sources[n].chunk_id is not None for n in marks)


def _answer_result(run: EvalRun, case: EvalCase) -> dict:
    fields = {
        "run": run,
        "case": case,
        "mode": "answer",
        "question": case.question,
        "language": case.language,
    }
    started = time.perf_counter()
    try:
        answer = answer_ask(question=case.question, channel=ANSWER_CHANNEL)
    except ApiError as exc:  # a refused or failed ask is this case's result, not the run's end
        return {
            **fields,
            "error_code": exc.code,
            "latency_ms": (time.perf_counter() - started) * 1000,
        }
    expects_answer = bool(expected_items(case))
    refused = answer.outcome == AnswerOutcome.NO_RELEVANT
    found = keywords_found(answer.answer, case.expected_keywords)
    return {
        **fields,
        "answer": answer,
        "answer_text": answer.answer,
        "error_code": answer.error_code,
        "latency_ms": float(answer.latency_ms),
        "keywords_found": found,
        "keywords_ok": len(found) == len(case.expected_keywords)
        if case.expected_keywords and expects_answer
        else None,
        "citations_valid": citations_are_valid(answer) if expects_answer else None,
        "refusal_ok": refused != expects_answer,
    }


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_metrics(run: EvalRun) -> dict:
    """Means per mode, overall and per language, with latency p50/p95; answer check rates."""
    by_mode: dict[str, dict[str, list[EvalResult]]] = defaultdict(lambda: defaultdict(list))
    for result in run.results.all():
        by_mode[result.mode]["all"].append(result)
        by_mode[result.mode][result.language].append(result)
    metrics: dict = {}
    for mode, groups in by_mode.items():
        metrics[mode] = {
            group: (_answer_summary(results) if mode == "answer" else _search_summary(results))
            for group, results in sorted(groups.items(), key=lambda item: item[0] != "all")
        }
    return metrics


def _search_summary(results: list[EvalResult]) -> dict:
    scored = [r for r in results if r.recall_at_10 is not None]
    summary = mean_scores(
        [
            CaseScores(
                r.first_relevant_rank,
                r.recall_at_1,
                r.recall_at_3,
                r.recall_at_10,
                r.reciprocal_rank,
                r.ndcg_at_10,
                (),
            )
            for r in scored
        ]
    )
    latencies = [r.latency_ms for r in results]
    summary["errors"] = sum(1 for r in results if r.error_code)
    summary["latency_p50_ms"] = round(statistics.median(latencies), 2) if latencies else 0.0
    summary["latency_p95_ms"] = round(_percentile(latencies, 0.95), 2)
    return summary


def _rate(values: list[bool | None]) -> float | None:
    checked = [v for v in values if v is not None]
    return sum(checked) / len(checked) if checked else None


def _answer_summary(results: list[EvalResult]) -> dict:
    latencies = [r.latency_ms for r in results]
    return {
        "cases": len(results),
        "keywords_ok": _rate([r.keywords_ok for r in results]),
        "citations_valid": _rate([r.citations_valid for r in results]),
        "refusal_ok": _rate([r.refusal_ok for r in results]),
        "errors": sum(1 for r in results if r.error_code),
        "latency_p50_ms": round(statistics.median(latencies), 2) if latencies else 0.0,
        "latency_p95_ms": round(_percentile(latencies, 0.95), 2),
    }
