"""Outcome feedback on passages (knowledge/feedback.py): signals from answers, the bound, repeats,
reverts by the origin and by curators, and signals following their text through re-chunking and
edits."""

import pytest

from knowledge.answer.answering import answer_feedback
from knowledge.feedback import (
    chunk_feedback_apply,
    chunk_feedback_restore,
    chunk_feedback_revert,
    feedback_boost_bound,
)
from knowledge.models import (
    AnswerSource,
    ChunkFeedback,
    FeedbackReason,
    KnowledgeChunk,
    RevertCause,
)
from knowledge.services import chunk_update
from tests.knowledge.factories import make_answer, make_source

pytestmark = pytest.mark.django_db

MATCHED = FeedbackReason.ORDER_FIX_MATCHED
WRONG = FeedbackReason.DIAGNOSIS_WRONG


@pytest.fixture
def chunks():
    return list(make_source(uri="kb://manual").chunks.order_by("ordinal"))


def boost(chunk: KnowledgeChunk) -> float:
    return KnowledgeChunk.objects.get(pk=chunk.pk).feedback_boost


def answer_citing(*cited: KnowledgeChunk, retrieved: tuple[KnowledgeChunk, ...] = ()):
    """A stored answer whose [n] markers cite `cited`; `retrieved` were shown, not cited."""
    answer = make_answer("What does E-21 mean?")
    for rank, (chunk, is_cited) in enumerate(
        [*((chunk, True) for chunk in cited), *((chunk, False) for chunk in retrieved)], 1
    ):
        AnswerSource.objects.create(
            answer=answer,
            chunk=chunk,
            source_id=chunk.source_id,
            source_title="KG-200 Manual",
            quoted_text=chunk.content,
            score=0.5,
            rank=rank,
            cited=is_cited,
        )
    return answer


def test_a_not_helpful_answer_lowers_the_chunks_it_cited_and_no_other(chunks, settings):
    cited, shown = chunks[0], chunks[1]
    answer = answer_citing(cited, retrieved=(shown,))
    answer_feedback(answer=answer, is_helpful=False, by="agent")
    assert boost(cited) == -settings.KIOKU_FEEDBACK_STEP
    assert boost(shown) == 0.0
    signal = ChunkFeedback.objects.get()
    assert (signal.chunk_id, signal.reason, signal.origin_ref) == (
        cited.pk,
        FeedbackReason.ANSWER_NOT_HELPFUL,
        f"answer:{answer.pk}",
    )


def test_marking_the_same_answer_not_helpful_again_changes_nothing(chunks, settings):
    answer = answer_citing(chunks[0])
    for _ in range(3):
        answer_feedback(answer=answer, is_helpful=False, by="agent")
    assert ChunkFeedback.objects.count() == 1
    assert boost(chunks[0]) == -settings.KIOKU_FEEDBACK_STEP


def test_marking_the_answer_helpful_again_withdraws_its_signal_and_not_helpful_brings_it_back(
    chunks, settings
):
    answer = answer_citing(chunks[0])
    answer_feedback(answer=answer, is_helpful=False, by="agent")
    answer_feedback(answer=answer, is_helpful=True, by="agent")
    signal = ChunkFeedback.objects.get()
    assert (signal.revert_cause, signal.reverted_by) == (RevertCause.WITHDRAWN, "agent")
    assert boost(chunks[0]) == 0.0
    answer_feedback(answer=answer, is_helpful=False, by="agent")
    assert boost(chunks[0]) == -settings.KIOKU_FEEDBACK_STEP
    assert ChunkFeedback.objects.get().reverted_at is None


def test_a_boost_stays_within_the_maximum_however_many_signals_agree(chunks, settings):
    settings.KIOKU_FEEDBACK_STEP = 0.4
    settings.KIOKU_FEEDBACK_MAX_BOOST = 1.0
    for order in range(5):
        chunk_feedback_apply(chunk_ids=[chunks[0].pk], reason=MATCHED, origin_ref=f"order:{order}")
        chunk_feedback_apply(chunk_ids=[chunks[1].pk], reason=WRONG, origin_ref=f"order:{order}")
    assert ChunkFeedback.objects.filter(chunk=chunks[0]).count() == 5  # all kept, bounded sum
    assert (boost(chunks[0]), boost(chunks[1])) == (1.0, -1.0)
    assert feedback_boost_bound(0.3) == 0.3


def test_reverting_a_signal_restores_the_boost_before_it_and_restoring_it_puts_it_back(
    chunks, settings
):
    step = settings.KIOKU_FEEDBACK_STEP
    chunk_feedback_apply(chunk_ids=[chunks[0].pk], reason=MATCHED, origin_ref="order:1")
    before = boost(chunks[0])
    chunk_feedback_apply(chunk_ids=[chunks[0].pk], reason=MATCHED, origin_ref="order:2")
    assert boost(chunks[0]) == before + step
    latest = ChunkFeedback.objects.get(origin_ref="order:2")
    assert chunk_feedback_revert(signal_ids=[latest.pk], by="curator") == 1
    assert boost(chunks[0]) == before
    latest.refresh_from_db()
    assert (latest.revert_cause, latest.reverted_by) == (RevertCause.CURATOR, "curator")
    assert chunk_feedback_revert(signal_ids=[latest.pk], by="curator") == 0  # already reverted
    assert chunk_feedback_restore(signal_ids=[latest.pk]) == 1
    assert boost(chunks[0]) == before + step


def test_a_curators_revert_stands_when_the_answer_is_marked_not_helpful_again(chunks):
    answer = answer_citing(chunks[0])
    answer_feedback(answer=answer, is_helpful=False, by="agent")
    chunk_feedback_revert(signal_ids=ChunkFeedback.objects.values_list("pk", flat=True), by="cur")
    answer_feedback(answer=answer, is_helpful=False, by="agent")
    assert ChunkFeedback.objects.get().revert_cause == RevertCause.CURATOR
    assert boost(chunks[0]) == 0.0


def test_signals_follow_unchanged_text_when_a_source_is_re_ingested(chunks, settings):
    from tests.knowledge.factories import MANUAL_MD

    kept, rewritten = chunks[0], chunks[-1]
    chunk_feedback_apply(chunk_ids=[kept.pk, rewritten.pk], reason=MATCHED, origin_ref="order:1")
    last_words = rewritten.content.split()[-3:]
    make_source(uri="kb://manual", text=MANUAL_MD.replace(" ".join(last_words), "Ten years."))
    new_kept = KnowledgeChunk.objects.get(content_hash=kept.content_hash)
    assert new_kept.pk != kept.pk  # re-chunking made new rows
    assert new_kept.feedback_boost == settings.KIOKU_FEEDBACK_STEP
    assert ChunkFeedback.objects.get(content_hash=kept.content_hash).chunk_id == new_kept.pk
    detached = ChunkFeedback.objects.get(content_hash=rewritten.content_hash)
    assert detached.chunk_id is None  # its text is gone: listed, counting for nothing
    assert not KnowledgeChunk.objects.exclude(pk=new_kept.pk).exclude(feedback_boost=0).exists()


def test_a_rewritten_chunk_starts_afresh(chunks):
    chunk_feedback_apply(chunk_ids=[chunks[0].pk], reason=WRONG, origin_ref="answer:1")
    edited = chunk_update(chunk=KnowledgeChunk.objects.get(pk=chunks[0].pk), content="New text.")
    assert edited.feedback_boost == 0.0 and boost(chunks[0]) == 0.0
    assert ChunkFeedback.objects.get().chunk_id is None


def test_an_edit_never_writes_back_a_boost_it_read_before_a_signal(chunks, settings):
    stale = KnowledgeChunk.objects.get(pk=chunks[0].pk)  # read before the signal
    chunk_feedback_apply(chunk_ids=[chunks[0].pk], reason=MATCHED, origin_ref="order:1")
    chunk_update(chunk=stale, pinned=True)
    assert boost(chunks[0]) == settings.KIOKU_FEEDBACK_STEP
    assert KnowledgeChunk.objects.get(pk=chunks[0].pk).pinned


@pytest.mark.django_db(transaction=True)
def test_two_signals_written_at_once_both_count(settings):
    """The second writer waits for the first's lock on the chunk, then sums both signals: without
    the lock it would write back a sum that misses the first's."""
    import threading
    import time

    from django.db import connection, transaction

    chunk = make_source(uri="kb://manual").chunks.first()
    first_applied, first_may_commit = threading.Event(), threading.Event()
    second_pid: dict[str, int] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                chunk_feedback_apply(chunk_ids=[chunk.pk], reason=WRONG, origin_ref="order:1")
                first_applied.set()
                assert first_may_commit.wait(timeout=30)
        finally:
            connection.close()

    def second() -> None:
        try:
            assert first_applied.wait(timeout=30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid["pid"] = cursor.fetchone()[0]
            chunk_feedback_apply(chunk_ids=[chunk.pk], reason=WRONG, origin_ref="order:2")
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                [second_pid.get("pid", -1)],
            )
            row = cursor.fetchone()
        if row is not None and row[0] == "Lock":
            break
        assert time.monotonic() < deadline, "the second writer never waited for the lock"
        time.sleep(0.02)
    first_may_commit.set()
    for thread in threads:
        thread.join(timeout=30)
    assert boost(chunk) == -2 * settings.KIOKU_FEEDBACK_STEP
