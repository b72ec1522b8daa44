"""Outcome feedback on cases: a completed order says whether its fix matched the card's diagnosis,
and what that diagnosis cited moves up or down — the resolved cases of a layer-1 diagnosis
(`CaseFeedback`), the passages a layer-2 answer cited (knowledge's `ChunkFeedback`). The signals,
their bound and their reverts follow knowledge/feedback.py, the one place of that rule."""

from collections.abc import Iterable

from django.db import transaction

from dispatch.models import CaseFeedback, ProblemCard, ServiceOrder
from knowledge.feedback import (
    answer_cited_chunk_ids,
    chunk_feedback_apply,
    feedback_signals_apply,
    feedback_signals_restore,
    feedback_signals_revert,
)
from knowledge.models import FeedbackReason


def case_feedback_apply(*, card_ids: Iterable[int], reason: str, origin_ref: str) -> int:
    """One signal on each case (see knowledge.feedback.feedback_signals_apply)."""
    identities = {
        card_id: {"card_id": card_id}
        for card_id in ProblemCard.objects.filter(pk__in=list(card_ids)).values_list(
            "pk", flat=True
        )
    }
    if not identities:
        return 0
    return feedback_signals_apply(
        signals=CaseFeedback,
        target_field="card",
        identities=identities,
        reason=reason,
        origin_ref=origin_ref,
    )


def case_feedback_revert(*, signal_ids: Iterable[int], by: str) -> int:
    """The admin's "Revert selected signals"."""
    return feedback_signals_revert(
        signals=CaseFeedback, target_field="card", signal_ids=signal_ids, by=by
    )


def case_feedback_restore(*, signal_ids: Iterable[int]) -> int:
    """The admin's "Restore selected signals"."""
    return feedback_signals_restore(
        signals=CaseFeedback, target_field="card", signal_ids=signal_ids
    )


def diagnosis_citations(diagnosis: dict) -> tuple[list[int], list[int]]:
    """What a stored diagnosis (`ProblemCard.diagnosis`) cited: the cards of its layer-1 cases,
    and the chunks its layer-2 answer cited. Layer 3 cites nothing."""
    layer = diagnosis.get("layer")
    if layer == 1:
        cases = diagnosis.get("cases") or []
        return [case["card_id"] for case in cases if isinstance(case.get("card_id"), int)], []
    if layer == 2 and isinstance(diagnosis.get("answer_id"), int):
        return [], answer_cited_chunk_ids(answer_id=diagnosis["answer_id"])
    return [], []


@transaction.atomic
def order_outcome_signals(*, order: ServiceOrder, diagnosis: dict) -> int:
    """A completed order's word on the diagnosis it worked from: matched raises what it cited,
    not matched lowers it ("wrong diagnosis"); not said does nothing. Once per order
    (`order:<id>`). Returns how many signals now count anew."""
    if order.diagnosis_matched is None:
        return 0
    reason = (
        FeedbackReason.ORDER_FIX_MATCHED
        if order.diagnosis_matched
        else FeedbackReason.DIAGNOSIS_WRONG
    )
    origin_ref = f"order:{order.pk}"
    card_ids, chunk_ids = diagnosis_citations(diagnosis)
    return case_feedback_apply(
        card_ids=card_ids, reason=reason, origin_ref=origin_ref
    ) + chunk_feedback_apply(chunk_ids=chunk_ids, reason=reason, origin_ref=origin_ref)
