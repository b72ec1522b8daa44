"""Threshold calibration: is the similarity threshold of the ask relevance rule and of diagnosis
layer 1 at the right place for the embedding model in use?

Each threshold gets a labelled distribution of similarities — what outcomes say about the best
match seen — and a suggested cut:

**Ask** (`ask_similarity`), one point per answer with feedback: the best vector similarity among
its passages (`AnswerSource.vector_score`; answers whose passages have none are left out).
- answered and marked helpful → positive (the passages were relevant);
- answered and marked not helpful → negative;
- "no relevant documents" and marked helpful → negative (the refusal was right: the closest
  passage was not relevant);
- "no relevant documents" marked not helpful is ambiguous — a threshold too strict, or a gap in
  the knowledge base — and is left out (counted in the notes).
The embedding model of an answer is not stored with it: it is the active space's model for
answers asked since the last switch (`EmbeddingSpaceState.switched_at`), the retired model for
earlier ones while that is still recorded, else unknown (left out, counted). Should `Answer`
gain an `embedding_model` field, it is used instead.

**Cases** (`case_similarity`), one point per `DiagnosisRecord` with a best similarity, labelled by
what happened next to its card (the next diagnosis, an order completed or cancelled, the card
resolved, whichever came first):
- layer 3 (escalated: no case passed and the manuals held nothing) → negative;
- layer 1 followed by a completed order, or by the card's resolution → positive (a
  resolution); an order completed with `diagnosis_matched` False (a wrong diagnosis) → negative;
- layer 1 followed by a cancelled order, or by a diagnosis that escalated → negative;
- layer 1 with nothing yet, or followed by another non-escalating diagnosis, and layer 2 (the
  manuals answered: it says nothing about cases) → no label.
Points are grouped per embedding model, and per model and brand (`ProblemCard.brand_key`) where
the brand alone has enough of both labels.

**The suggestion**: the cut over the observed similarities that maximises Youden's J (true
positive rate − false positive rate, a point passing when its similarity ≥ the cut), ties going
to the higher cut, given at least `KIOKU_CALIBRATION_MIN_POINTS` positives and as many negatives.
No cut with J > 0 → no suggestion (the similarities do not separate the outcomes).
"""

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Max, QuerySet

from core.errors import ApiError, ErrorCode
from core.models import ThresholdKind, ThresholdSetting
from core.thresholds import (
    ThresholdError,
    threshold_setting_active,
    threshold_setting_apply,
    threshold_setting_reset,
    threshold_value,
)
from dispatch.diagnosis import case_default_similarity
from dispatch.models import (
    DiagnosisRecord,
    OrderEvent,
    OrderStatus,
    ProblemCard,
    normalize_key,
)
from knowledge.answer.answering import ask_default_similarity
from knowledge.embed.spaces import space_state
from knowledge.models import Answer, AnswerFeedback, AnswerOutcome, EmbeddingSpaceState
from quality.errors import CALIBRATION_NO_SUGGESTION, CALIBRATION_STALE

METHOD = "youden_j"
# The suggestion a page showed must still be the one computed when its button is pressed.
SAME_VALUE = 1e-9

DEFAULTS: dict[str, Callable[[str], float]] = {
    ThresholdKind.ASK_SIMILARITY: ask_default_similarity,
    ThresholdKind.CASE_SIMILARITY: case_default_similarity,
}


class CalibrationError(ApiError):
    status = 409


# --- The maths ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One labelled similarity: `is_positive` when the outcome says the match was right."""

    score: float
    is_positive: bool


@dataclass(frozen=True)
class CutStats:
    """How a threshold splits labelled points: a point passes when its score ≥ `threshold`."""

    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def true_positive_rate(self) -> float:
        positives = self.true_positives + self.false_negatives
        return self.true_positives / positives if positives else 0.0

    @property
    def false_positive_rate(self) -> float:
        negatives = self.false_positives + self.true_negatives
        return self.false_positives / negatives if negatives else 0.0

    @property
    def recall(self) -> float:
        return self.true_positive_rate

    @property
    def precision(self) -> float | None:
        """None when nothing passes."""
        passed = self.true_positives + self.false_positives
        return self.true_positives / passed if passed else None

    @property
    def youden_j(self) -> float:
        return self.true_positive_rate - self.false_positive_rate

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "true_negatives": self.true_negatives,
            "true_positive_rate": self.true_positive_rate,
            "false_positive_rate": self.false_positive_rate,
            "precision": self.precision,
            "recall": self.recall,
            "youden_j": self.youden_j,
        }


def cut_stats(points: Sequence[Point], threshold: float) -> CutStats:
    tp = sum(1 for p in points if p.is_positive and p.score >= threshold)
    fp = sum(1 for p in points if not p.is_positive and p.score >= threshold)
    positives = sum(1 for p in points if p.is_positive)
    return CutStats(
        threshold=threshold,
        true_positives=tp,
        false_positives=fp,
        false_negatives=positives - tp,
        true_negatives=len(points) - positives - fp,
    )


def youden_cut(points: Sequence[Point]) -> CutStats | None:
    """The observed score that, as a threshold, maximises Youden's J; ties to the higher cut.
    None without points of both labels."""
    positives = sorted(p.score for p in points if p.is_positive)
    negatives = sorted(p.score for p in points if not p.is_positive)
    if not positives or not negatives:
        return None
    best: tuple[int, float] | None = None
    # Highest cut first, so a tie keeps the higher one (only a strictly larger J replaces it).
    # J = tp/P − fp/N is compared as tp·N − fp·P: integers, so equal J are equal (no rounding).
    for cut in sorted({p.score for p in points}, reverse=True):
        tp = len(positives) - bisect.bisect_left(positives, cut)
        fp = len(negatives) - bisect.bisect_left(negatives, cut)
        scaled_j = tp * len(negatives) - fp * len(positives)
        if best is None or scaled_j > best[0]:
            best = (scaled_j, cut)
    return cut_stats(points, best[1])


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    positives: int
    negatives: int


def histogram(
    points: Sequence[Point], *, bins: int = 20, low: float = 0.0, high: float = 1.0
) -> list[Bin]:
    """Counts per label in `bins` equal bins over [low, high]; scores outside go to the end bins
    (the last bin includes `high`)."""
    width = (high - low) / bins
    positives = [0] * bins
    negatives = [0] * bins
    for point in points:
        # Rounded first: 0.7 / 0.05 is 13.999…, and 0.7 belongs to the bin that starts at 0.7.
        index = min(bins - 1, max(0, math.floor(round((point.score - low) / width, 9))))
        (positives if point.is_positive else negatives)[index] += 1
    return [
        Bin(low + i * width, low + (i + 1) * width, positives[i], negatives[i]) for i in range(bins)
    ]


# --- The labelled points ------------------------------------------------------------------------


@dataclass
class Labelled:
    """Points per group key, and what was left out and why (reason → count)."""

    points: dict[tuple[str, str], list[Point]] = field(default_factory=lambda: defaultdict(list))
    left_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _has_field(model: type, name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


def _answer_model_rule() -> Callable[[datetime], str]:
    """Which embedding model answered a question asked at a time (see the module docstring)."""
    row = EmbeddingSpaceState.objects.filter(pk=1).first()
    if row is None:
        active = space_state().active.model
        return lambda _: active
    switched, active, retired = row.switched_at, row.active_model, row.retired_model
    return lambda asked: active if switched is None or asked >= switched else retired


def ask_points() -> Labelled:
    labelled = Labelled()
    answers = (
        Answer.objects.filter(
            feedback__in=[AnswerFeedback.HELPFUL, AnswerFeedback.NOT_HELPFUL],
            outcome__in=[AnswerOutcome.ANSWERED, AnswerOutcome.NO_RELEVANT],
        )
        .annotate(best=Max("sources__vector_score"))
        .order_by()
    )
    has_model = _has_field(Answer, "embedding_model")
    columns = ["outcome", "feedback", "created_at", "best"]
    model_of = None if has_model else _answer_model_rule()
    for row in answers.values(*columns, *(["embedding_model"] if has_model else [])):
        if row["best"] is None:
            labelled.left_out["no passage with a vector similarity"] += 1
            continue
        helpful = row["feedback"] == AnswerFeedback.HELPFUL
        if row["outcome"] == AnswerOutcome.NO_RELEVANT:
            if not helpful:
                labelled.left_out["refusal marked not helpful (ambiguous)"] += 1
                continue
            is_positive = False
        else:
            is_positive = helpful
        model = row["embedding_model"] if has_model else model_of(row["created_at"])
        if not model:
            labelled.left_out["embedding model unknown (asked before a model switch)"] += 1
            continue
        labelled.points[(model, "")].append(Point(row["best"], is_positive))
    return labelled


# At the same instant, an order's completion is told before the card's resolution it causes.
EVENT_ORDER = {"completed": 0, "cancelled": 0, "resolved": 1, "diagnosis": 2}


def _card_events(card_ids: QuerySet) -> dict[int, list[tuple[datetime, str, object]]]:
    """Per card (ids from a subquery), what happened to it in time order: ("diagnosis", layer),
    ("completed", matched or None), ("cancelled", None), ("resolved", None)."""
    events: dict[int, list[tuple[datetime, str, object]]] = defaultdict(list)
    for card_id, created_at, layer in DiagnosisRecord.objects.filter(
        card_id__in=card_ids
    ).values_list("card_id", "created_at", "layer"):
        events[card_id].append((created_at, "diagnosis", layer))
    # An order whose fix did not match the diagnosis (outcome feedback) makes it a negative.
    for row in OrderEvent.objects.filter(
        order__card_id__in=card_ids,
        to_status__in=[OrderStatus.COMPLETED, OrderStatus.CANCELLED],
    ).values("order__card_id", "created_at", "to_status", "order__diagnosis_matched"):
        kind = "completed" if row["to_status"] == OrderStatus.COMPLETED else "cancelled"
        value = row["order__diagnosis_matched"]
        events[row["order__card_id"]].append((row["created_at"], kind, value))
    for card_id, resolved_at in ProblemCard.objects.filter(
        pk__in=card_ids, resolved_at__isnull=False
    ).values_list("pk", "resolved_at"):
        events[card_id].append((resolved_at, "resolved", None))
    for timeline in events.values():
        timeline.sort(key=lambda event: (event[0], EVENT_ORDER[event[1]]))
    return events


def _case_label(
    layer: int, created_at: datetime, timeline: list[tuple[datetime, str, object]]
) -> tuple[bool | None, str]:
    """(label, why) of one diagnosis from its card's timeline; label None = not labelled."""
    if layer == 3:
        return False, "escalated"
    if layer != 1:
        return None, "answered from the manuals"
    following = [event for event in timeline if event[0] > created_at]
    if not following:
        return None, "no outcome yet"
    _, kind, value = following[0]
    if kind == "diagnosis":
        return (False, "escalated later") if value == 3 else (None, "diagnosed again")
    if kind == "completed":
        return (False, "fix did not match") if value is False else (True, "resolved")
    if kind == "cancelled":
        return False, "order cancelled"
    return True, "resolved"


def case_points() -> Labelled:
    """Points keyed (model, brand_key); the every-brand group is built from the brands'."""
    labelled = Labelled()
    scored = DiagnosisRecord.objects.filter(best_similarity__isnull=False).exclude(
        embedding_model=""
    )
    records = scored.order_by().values_list(
        "card_id", "layer", "created_at", "best_similarity", "embedding_model", "card__brand_key"
    )
    timelines = _card_events(scored.order_by().values("card_id"))
    for card_id, layer, created_at, score, model, brand_key in records:
        label, why = _case_label(layer, created_at, timelines.get(card_id, []))
        if label is None:
            labelled.left_out[why] += 1
            continue
        labelled.points[(model, brand_key)].append(Point(score, label))
    return labelled


# --- Groups: what the page shows and what a click applies --------------------------------------


@dataclass
class CalibrationGroup:
    kind: str
    embedding_model: str
    brand_key: str
    points: list[Point]
    default: float
    current: float
    setting: ThresholdSetting | None
    min_points: int
    suggestion: CutStats | None = None
    at_current: CutStats | None = None
    no_suggestion_reason: str = ""
    bins: list[Bin] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return sum(1 for p in self.points if p.is_positive)

    @property
    def negatives(self) -> int:
        return len(self.points) - self.positives

    @property
    def is_suggestion_in_force(self) -> bool:
        return (
            self.suggestion is not None
            and self.setting is not None
            and abs(self.setting.value - self.suggestion.threshold) <= SAME_VALUE
        )

    def evidence(self) -> dict:
        return {
            "method": METHOD,
            "positives": self.positives,
            "negatives": self.negatives,
            "min_points": self.min_points,
            "suggested": self.suggestion.as_dict() if self.suggestion else None,
            "at_previous": self.at_current.as_dict() if self.at_current else None,
        }


def _group(kind: str, model: str, brand_key: str, points: list[Point]) -> CalibrationGroup:
    default = DEFAULTS[kind](model)
    min_points = settings.KIOKU_CALIBRATION_MIN_POINTS
    group = CalibrationGroup(
        kind=kind,
        embedding_model=model,
        brand_key=brand_key,
        points=points,
        default=default,
        current=threshold_value(kind=kind, model=model, brand_key=brand_key, default=default),
        setting=threshold_setting_active(kind=kind, model=model, brand_key=brand_key),
        min_points=min_points,
        bins=histogram(points),
    )
    group.at_current = cut_stats(points, group.current) if points else None
    if group.positives < min_points or group.negatives < min_points:
        group.no_suggestion_reason = (
            f"Too few labelled points: {group.positives} positive and {group.negatives} negative;"
            f" a suggestion needs at least {min_points} of each."
        )
        return group
    best = youden_cut(points)
    if best is None or best.youden_j <= 0:
        group.no_suggestion_reason = (
            "The similarities do not separate the outcomes: no threshold passes more positives"
            " than negatives (Youden's J ≤ 0)."
        )
        return group
    group.suggestion = best
    return group


def _case_groups(labelled: Labelled, min_points: int) -> list[tuple[str, str, list[Point]]]:
    by_model: dict[str, list[Point]] = defaultdict(list)
    brands: list[tuple[str, str, list[Point]]] = []
    for (model, brand_key), points in sorted(labelled.points.items()):
        by_model[model].extend(points)
        positives = sum(1 for p in points if p.is_positive)
        if brand_key and positives >= min_points and len(points) - positives >= min_points:
            brands.append((model, brand_key, points))
    # A brand holding every point of its model would repeat the model's group.
    brands = [group for group in brands if len(group[2]) < len(by_model[group[0]])]
    return [(model, "", points) for model, points in by_model.items()] + brands


@dataclass
class Calibration:
    kind: str
    groups: list[CalibrationGroup]
    left_out: dict[str, int]  # why points were left out → how many
    active_model: str


def calibration_read(*, kind: str) -> Calibration:
    """Every group of one threshold kind: the active embedding model's always (with or without
    points), each other model that has points, brands that have enough, and any group whose
    threshold is set by a row."""
    active_model = space_state().active.model
    labelled = ask_points() if kind == ThresholdKind.ASK_SIMILARITY else case_points()
    if kind == ThresholdKind.ASK_SIMILARITY:
        keyed = [(model, "", points) for (model, _), points in sorted(labelled.points.items())]
    else:
        keyed = _case_groups(labelled, settings.KIOKU_CALIBRATION_MIN_POINTS)
    seen = {(model, brand_key) for model, brand_key, _ in keyed}
    for model, brand_key in (
        ThresholdSetting.objects.active()
        .filter(kind=kind)
        .values_list("embedding_model", "brand_key")
    ):
        if (model, brand_key) not in seen:
            keyed.append((model, brand_key, []))
            seen.add((model, brand_key))
    if (active_model, "") not in seen:
        keyed.append((active_model, "", []))
    keyed.sort(key=lambda item: (item[0] != active_model, item[0], item[1]))
    return Calibration(
        kind=kind,
        groups=[_group(kind, model, brand_key, points) for model, brand_key, points in keyed],
        left_out=dict(labelled.left_out),
        active_model=active_model,
    )


def calibration_group(*, kind: str, model: str, brand_key: str = "") -> CalibrationGroup:
    """One group, computed now (for the apply button)."""
    brand_key = normalize_key(brand_key)
    labelled = ask_points() if kind == ThresholdKind.ASK_SIMILARITY else case_points()
    points = [
        point
        for (group_model, group_brand), group_points in labelled.points.items()
        if group_model == model and (not brand_key or group_brand == brand_key)
        for point in group_points
    ]
    return _group(kind, model, brand_key, points)


def _kind_check(kind: str) -> None:
    if kind not in DEFAULTS:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            f"Unknown threshold kind {kind!r}; use one of {', '.join(DEFAULTS)}.",
            details={"field": "kind"},
        )


def threshold_suggestion_apply(
    *, kind: str, model: str, brand_key: str = "", shown_value: float, by: str
) -> ThresholdSetting:
    """Put the suggested threshold of a group in force, with its evidence. `shown_value` is the
    suggestion the person saw: if the data moved since, nothing is applied (CALIBRATION_STALE)."""
    _kind_check(kind)
    group = calibration_group(kind=kind, model=model, brand_key=brand_key)
    if group.suggestion is None:
        raise CalibrationError(
            CALIBRATION_NO_SUGGESTION,
            group.no_suggestion_reason,
            details={"kind": kind, "embedding_model": model, "brand_key": brand_key},
        )
    if abs(group.suggestion.threshold - shown_value) > SAME_VALUE:
        raise CalibrationError(
            CALIBRATION_STALE,
            f"The suggestion is now {group.suggestion.threshold:.3f}, not {shown_value:.3f}:"
            " new outcomes came in. Look at the chart again before applying it.",
            details={"suggested": group.suggestion.threshold, "shown": shown_value},
        )
    return threshold_setting_apply(
        kind=kind,
        model=model,
        brand_key=brand_key,
        value=group.suggestion.threshold,
        default=group.default,
        reason=(
            f"Calibration: Youden's J {group.suggestion.youden_j:.3f} over"
            f" {group.positives} positive and {group.negatives} negative points."
        ),
        evidence=group.evidence(),
        by=by,
    )


def threshold_default_reset(
    *, kind: str, model: str, brand_key: str = "", by: str
) -> ThresholdSetting | None:
    """Back to the settings' default (a brand: back to the every-brand value); the reset's row,
    or None when no row was in force."""
    _kind_check(kind)
    return threshold_setting_reset(
        kind=kind, model=model, brand_key=brand_key, default=DEFAULTS[kind](model), by=by
    )
