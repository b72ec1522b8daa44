"""Outcome feedback: what happened after a passage or a case was used moves its rank.

A signal is one row (`ChunkFeedback` here, `dispatch.CaseFeedback` for cases): a completed order
whose fix matched the diagnosis raises what the diagnosis cited, a wrong diagnosis or a
not-helpful answer lowers it, each by KIOKU_FEEDBACK_STEP. A target's `feedback_boost` is the sum
of its signals not reverted, held within ± KIOKU_FEEDBACK_MAX_BOOST, and is written onto the
target in the transaction that changed its signals — by `feedback_boosts_recompute`, the one
place of that rule, for chunks and cases alike. Search adds KIOKU_FEEDBACK_WEIGHT × the boost to
a chunk's score (knowledge/search/fusion.py), diagnosis layer 1 KIOKU_CASE_FEEDBACK_WEIGHT × the
boost to a case's rank score (dispatch/diagnosis.py).

Signals are never deleted: the origin may withdraw its own (an answer marked helpful again), a
curator may revert any and restore it (the admin actions). One signal per target, reason and
origin (`order:12`, `answer:5`): repeating a cause changes nothing.

Concurrency: every writer locks the targets (FOR NO KEY UPDATE, in id order) before it touches
their signals, so the sum it then reads includes every committed signal and the boost it writes
is never a stale one.
"""

from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from knowledge.models import (
    AnswerFeedback,
    AnswerSource,
    ChunkFeedback,
    FeedbackReason,
    FeedbackSignal,
    KnowledgeChunk,
    RevertCause,
)

# --- The rule, for chunks and cases ---------------------------------------------------------------


def feedback_delta(*, reason: str) -> float:
    """The signed step of one signal: up when the fix matched the diagnosis, down otherwise."""
    step = settings.KIOKU_FEEDBACK_STEP
    return step if reason == FeedbackReason.ORDER_FIX_MATCHED else -step


def feedback_boost_bound(total: float) -> float:
    """A sum of signals as a boost: within ± KIOKU_FEEDBACK_MAX_BOOST."""
    limit = settings.KIOKU_FEEDBACK_MAX_BOOST
    return max(-limit, min(limit, total))


def _target_model(signals: type[FeedbackSignal], target_field: str) -> type:
    return signals._meta.get_field(target_field).related_model


def _targets_lock(signals: type[FeedbackSignal], target_field: str, ids: Iterable[int]) -> list:
    """Lock the targets (in id order: two writers never wait on each other crosswise)."""
    ids = sorted({target_id for target_id in ids if target_id is not None})
    model = _target_model(signals, target_field)
    return list(
        model.objects.filter(pk__in=ids).order_by("pk").select_for_update(no_key=True).only("pk")
    )


def feedback_boosts_recompute(
    *, signals: type[FeedbackSignal], target_field: str, target_ids: Iterable[int]
) -> None:
    """Write each target's boost from its signals not reverted (the one bound rule). Runs inside
    the caller's transaction, after it locked the targets."""
    ids = sorted({target_id for target_id in target_ids if target_id is not None})
    if not ids:
        return
    key = f"{target_field}_id"
    totals = dict(
        signals.objects.filter(**{f"{key}__in": ids}, reverted_at__isnull=True)
        .order_by()
        .values(key)
        .annotate(total=Sum("delta"))
        .values_list(key, "total")
    )
    model = _target_model(signals, target_field)
    for target_id in ids:
        model.objects.filter(pk=target_id).update(
            feedback_boost=feedback_boost_bound(totals.get(target_id) or 0.0)
        )


@transaction.atomic
def feedback_signals_apply(
    *,
    signals: type[FeedbackSignal],
    target_field: str,
    identities: dict[int, dict],
    reason: str,
    origin_ref: str,
) -> int:
    """One signal of `reason` from `origin_ref` on each target (target id → the fields that
    identify its signal besides reason and origin). A signal that exists already stays as it is,
    unless its origin had withdrawn it: then it counts again (the origin changed its mind back).
    A curator's revert stands. Returns how many signals now count that did not before."""
    _targets_lock(signals, target_field, identities)
    delta = feedback_delta(reason=reason)
    key = f"{target_field}_id"
    applied = 0
    moved_from: set[int] = set()
    for target_id, identity in identities.items():
        signal, created = signals.objects.get_or_create(
            **identity,
            reason=reason,
            origin_ref=origin_ref,
            defaults={key: target_id, "delta": delta},
        )
        changed = []
        if getattr(signal, key) != target_id:  # a chunk's signal, detached or on a twin text
            moved_from.add(getattr(signal, key))
            setattr(signal, key, target_id)
            changed.append(target_field)
        if signal.revert_cause == RevertCause.WITHDRAWN:
            signal.reverted_at, signal.reverted_by = None, ""
            signal.revert_cause = RevertCause.NONE
            changed += ["reverted_at", "reverted_by", "revert_cause"]
            applied += 1
        applied += created
        if changed:
            signal.save(update_fields=changed)
    _targets_lock(signals, target_field, moved_from)
    feedback_boosts_recompute(
        signals=signals, target_field=target_field, target_ids=[*identities, *moved_from]
    )
    return applied


def _signals_mark(
    *,
    signals: type[FeedbackSignal],
    target_field: str,
    rows: QuerySet,
    values: dict,
) -> int:
    key = f"{target_field}_id"
    _targets_lock(signals, target_field, rows.values_list(key, flat=True))
    touched = list(rows.values_list(key, flat=True))
    count = rows.update(**values)
    feedback_boosts_recompute(signals=signals, target_field=target_field, target_ids=touched)
    return count


@transaction.atomic
def feedback_signals_withdraw(
    *, signals: type[FeedbackSignal], target_field: str, reason: str, origin_ref: str, by: str
) -> int:
    """The origin takes its signals back (e.g. the answer was marked helpful after all)."""
    return _signals_mark(
        signals=signals,
        target_field=target_field,
        rows=signals.objects.filter(reason=reason, origin_ref=origin_ref, reverted_at=None),
        values={
            "reverted_at": timezone.now(),
            "reverted_by": by[:150],
            "revert_cause": RevertCause.WITHDRAWN,
        },
    )


@transaction.atomic
def feedback_signals_revert(
    *, signals: type[FeedbackSignal], target_field: str, signal_ids: Iterable[int], by: str
) -> int:
    """A curator reverts signals that count: they stay listed, their targets lose their effect."""
    return _signals_mark(
        signals=signals,
        target_field=target_field,
        rows=signals.objects.filter(pk__in=list(signal_ids), reverted_at=None),
        values={
            "reverted_at": timezone.now(),
            "reverted_by": by[:150],
            "revert_cause": RevertCause.CURATOR,
        },
    )


@transaction.atomic
def feedback_signals_restore(
    *, signals: type[FeedbackSignal], target_field: str, signal_ids: Iterable[int]
) -> int:
    """Undo a revert (by a curator or the origin): the signals count again."""
    return _signals_mark(
        signals=signals,
        target_field=target_field,
        rows=signals.objects.filter(pk__in=list(signal_ids), reverted_at__isnull=False),
        values={"reverted_at": None, "reverted_by": "", "revert_cause": RevertCause.NONE},
    )


# --- Chunks ---------------------------------------------------------------------------------------


def chunk_feedback_apply(*, chunk_ids: Iterable[int], reason: str, origin_ref: str) -> int:
    """One signal on each chunk (see feedback_signals_apply); returns how many now count anew."""
    identities = {
        chunk_id: {"source_id": source_id, "content_hash": digest}
        for chunk_id, source_id, digest in KnowledgeChunk.objects.filter(
            pk__in=list(chunk_ids)
        ).values_list("pk", "source_id", "content_hash")
    }
    if not identities:
        return 0
    return feedback_signals_apply(
        signals=ChunkFeedback,
        target_field="chunk",
        identities=identities,
        reason=reason,
        origin_ref=origin_ref,
    )


def chunk_feedback_withdraw(*, reason: str, origin_ref: str, by: str) -> int:
    return feedback_signals_withdraw(
        signals=ChunkFeedback, target_field="chunk", reason=reason, origin_ref=origin_ref, by=by
    )


def chunk_feedback_revert(*, signal_ids: Iterable[int], by: str) -> int:
    """The admin's "Revert selected signals"."""
    return feedback_signals_revert(
        signals=ChunkFeedback, target_field="chunk", signal_ids=signal_ids, by=by
    )


def chunk_feedback_restore(*, signal_ids: Iterable[int]) -> int:
    """The admin's "Restore selected signals"."""
    return feedback_signals_restore(
        signals=ChunkFeedback, target_field="chunk", signal_ids=signal_ids
    )


def chunk_feedback_follow_text(*, source_id: int) -> None:
    """Signals judge a passage's text, not a row: after a source's chunks changed (re-ingested,
    re-chunked, a chunk's text edited), each signal of the source points at the chunk that holds
    its text now (the first by ordinal) or at none — a rewritten passage starts afresh, its old
    signals stay listed — and the boosts of every chunk concerned follow. Runs inside the
    caller's transaction."""
    table = ChunkFeedback._meta.db_table
    chunks = KnowledgeChunk._meta.db_table
    holder = f"""(
        SELECT c.id FROM {chunks} c
        WHERE c.source_id = signal.source_id AND c.content_hash = signal.content_hash
        ORDER BY c.ordinal LIMIT 1
    )"""
    before = set(
        ChunkFeedback.objects.filter(source_id=source_id, chunk__isnull=False).values_list(
            "chunk_id", flat=True
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT {holder} FROM {table} AS signal WHERE signal.source_id = %s",
            [source_id],
        )
        after = {row[0] for row in cursor.fetchall()} - {None}
        _targets_lock(ChunkFeedback, "chunk", before | after)
        cursor.execute(
            f"UPDATE {table} AS signal SET chunk_id = {holder} "
            f"WHERE signal.source_id = %s AND signal.chunk_id IS DISTINCT FROM {holder}",
            [source_id],
        )
    feedback_boosts_recompute(
        signals=ChunkFeedback, target_field="chunk", target_ids=before | after
    )


# --- Answers --------------------------------------------------------------------------------------


def answer_cited_chunk_ids(*, answer_id: int) -> list[int]:
    """The chunks an answer cited (its `[n]` markers), those still there."""
    return list(
        AnswerSource.objects.filter(answer_id=answer_id, cited=True, chunk__isnull=False)
        .order_by("rank")
        .values_list("chunk_id", flat=True)
    )


@transaction.atomic
def answer_feedback_signals(*, answer_id: int, feedback: str, by: str) -> int:
    """What an answer's feedback does to the passages it cited: not helpful lowers them (once
    per answer); helpful again withdraws that. Called with the feedback write, in its
    transaction."""
    origin_ref = f"answer:{answer_id}"
    reason = FeedbackReason.ANSWER_NOT_HELPFUL
    if feedback == AnswerFeedback.NOT_HELPFUL:
        return chunk_feedback_apply(
            chunk_ids=answer_cited_chunk_ids(answer_id=answer_id),
            reason=reason,
            origin_ref=origin_ref,
        )
    return chunk_feedback_withdraw(reason=reason, origin_ref=origin_ref, by=by)
