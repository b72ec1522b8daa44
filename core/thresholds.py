"""Similarity thresholds set per embedding model (and per brand for cases), read in one place.

The code's defaults live in config/settings.py (`KIOKU_ASK_MIN_SIMILARITY[_OFFLINE]`,
`KIOKU_CASE_MIN_SIMILARITY[_OFFLINE]`); a curator or dispatcher may replace one for a model — the
calibration page applies a suggestion in one click — as a `ThresholdSetting` row. Every change is
a new row (the audit log), the one it replaces is deactivated in the same transaction, and a
reset writes a row that records the return to the default.

`threshold_value` is the reader: the ask relevance rule (knowledge.answer.answering.
similarity_threshold) and diagnosis layer 1 (dispatch.diagnosis.case_threshold) call it.
"""

import math

from django.db import transaction
from django.utils import timezone

from core.errors import ApiError, ErrorCode
from core.models import ThresholdKind, ThresholdSetting
from dispatch.models import normalize_key


class ThresholdError(ApiError):
    status = 422


def threshold_value(*, kind: str, model: str, brand_key: str = "", default: float) -> float:
    """The threshold in force: the brand's row, else the every-brand row, else `default`."""
    brand_key = normalize_key(brand_key)
    rows = dict(
        ThresholdSetting.objects.active()
        .filter(kind=kind, embedding_model=model, brand_key__in={brand_key, ""})
        .values_list("brand_key", "value")
    )
    if brand_key in rows:
        return rows[brand_key]
    return rows.get("", default)


def threshold_setting_active(
    *, kind: str, model: str, brand_key: str = ""
) -> ThresholdSetting | None:
    """The row in force for exactly this kind, model and brand (no fallback), if any."""
    return (
        ThresholdSetting.objects.active()
        .filter(kind=kind, embedding_model=model, brand_key=normalize_key(brand_key))
        .first()
    )


def _check(kind: str, model: str, brand_key: str) -> str:
    if kind not in ThresholdKind.values:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            f"Unknown threshold kind {kind!r}; use one of {', '.join(ThresholdKind.values)}.",
            details={"field": "kind"},
        )
    if not model.strip() or len(model) > 100:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            "The embedding model is required (at most 100 characters).",
            details={"field": "embedding_model"},
        )
    key = normalize_key(brand_key)
    if key and kind != ThresholdKind.CASE_SIMILARITY:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            "Only the case threshold is set per brand.",
            details={"field": "brand_key"},
        )
    if len(key) > 100:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            "The brand is longer than 100 characters.",
            details={"field": "brand_key"},
        )
    return key


def _replace(
    *,
    kind: str,
    model: str,
    brand_key: str,
    value: float | None,
    default: float,
    reason: str,
    evidence: dict,
    by: str,
) -> ThresholdSetting:
    """Deactivate the row in force (locked, so two applies cannot both win) and add the new one."""
    current = (
        ThresholdSetting.objects.active()
        .select_for_update()
        .filter(kind=kind, embedding_model=model, brand_key=brand_key)
        .first()
    )
    if current is not None:
        current.is_active = False
        current.deactivated_at = timezone.now()
        current.save(update_fields=["is_active", "deactivated_at"])
    return ThresholdSetting.objects.create(
        kind=kind,
        embedding_model=model,
        brand_key=brand_key,
        value=value,
        previous_value=current.value if current is not None else default,
        reason=reason[:500],
        evidence=evidence,
        set_by=by[:150],
        is_active=value is not None,
    )


@transaction.atomic
def threshold_setting_apply(
    *,
    kind: str,
    model: str,
    brand_key: str = "",
    value: float,
    default: float,
    reason: str,
    evidence: dict | None = None,
    by: str,
) -> ThresholdSetting:
    """Put `value` in force for the kind, model and brand. `default` is the settings' value,
    recorded as the previous one when no row was in force."""
    key = _check(kind, model, brand_key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            "The threshold must be a number.",
            details={"field": "value"},
        )
    if not -1 <= value <= 1:
        raise ThresholdError(
            ErrorCode.THRESHOLD_INVALID,
            "A similarity threshold lies between -1 and 1.",
            details={"field": "value", "value": value},
        )
    return _replace(
        kind=kind,
        model=model,
        brand_key=key,
        value=float(value),
        default=default,
        reason=reason,
        evidence=evidence or {},
        by=by,
    )


@transaction.atomic
def threshold_setting_reset(
    *, kind: str, model: str, brand_key: str = "", default: float, by: str
) -> ThresholdSetting | None:
    """Back to the default (or, for a brand, to the every-brand value): the row in force is
    deactivated and a row records the reset. Nothing in force → nothing written, None."""
    key = _check(kind, model, brand_key)
    if threshold_setting_active(kind=kind, model=model, brand_key=key) is None:
        return None
    return _replace(
        kind=kind,
        model=model,
        brand_key=key,
        value=None,
        default=default,
        reason="Reset to the default.",
        evidence={},
        by=by,
    )
