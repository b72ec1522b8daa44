"""The home dashboard's figures (core/queries.py) for rows put in through the real services."""

import math
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from pytest_django.fixtures import DjangoAssertNumQueries, Settings

from core.queries import StatusCount, dispatch_figures, home_dashboard
from knowledge.embed.pipeline import pipeline_pause, pipeline_resume
from knowledge.models import (
    AnswerFeedback,
    AnswerOutcome,
    EmbeddingStatus,
    KnowledgeChunk,
    KnowledgeSource,
    SourceStatus,
)
from knowledge.queries import current_embedding_model
from sessions_app.archiver import session_archive
from sessions_app.models import ChatSession
from tests.knowledge.factories import BATTERY, E21, FAQ_MD, fake_embed, make_answer, make_source
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def library() -> dict[str, KnowledgeSource]:
    """A manual embedded in the active space, an FAQ embedded by another model with one chunk
    disabled and one a dead letter, and a guide still waiting for its vectors."""
    manual = make_source(uri="kb://manual")
    fake_embed(manual, model=current_embedding_model())
    faq = make_source(text=FAQ_MD, title="Door lock FAQ", source_type="faq", uri="kb://faq")
    fake_embed(faq, model="an-older-model")
    first, second = faq.chunks.order_by("ordinal")[:2]
    KnowledgeChunk.objects.filter(pk=first.pk).update(enabled=False)
    KnowledgeChunk.objects.filter(pk=second.pk).update(
        embedding_status=EmbeddingStatus.DEAD, embedding_attempts=5
    )
    guide = make_source(text=BATTERY, title="Battery guide", source_type="sop", uri="kb://guide")
    return {"manual": manual, "faq": faq, "guide": guide}


def local_midnight(zone: str) -> datetime:
    return datetime.combine(timezone.localdate(timezone=ZoneInfo(zone)), time.min, ZoneInfo(zone))


# --- Knowledge --------------------------------------------------------------------------------


def test_sources_are_counted_by_status_good_news_first() -> None:
    for status, uri in [
        (SourceStatus.READY, "kb://a"),
        (SourceStatus.READY, "kb://b"),
        (SourceStatus.PARTIAL, "kb://c"),
        (SourceStatus.FAILED, "kb://d"),
    ]:
        source = make_source(uri=uri)
        KnowledgeSource.objects.filter(pk=source.pk).update(status=status)
    make_source(text=E21, title="E-21", uri="kb://e")  # pending until embedded

    knowledge = home_dashboard().knowledge

    assert knowledge.sources == 5
    assert knowledge.sources_by_status == [
        StatusCount("ready", "Ready", 2),
        StatusCount("partial", "Partial", 1),
        StatusCount("failed", "Failed", 1),
        StatusCount("pending", "Pending", 1),
    ]


def test_embedded_share_counts_usable_chunks_with_a_vector_of_the_active_space(
    library: dict[str, KnowledgeSource],
) -> None:
    manual, faq, guide = (library[name].chunks.count() for name in ("manual", "faq", "guide"))

    knowledge = home_dashboard().knowledge

    assert knowledge.chunks == manual + faq + guide
    usable = manual + faq - 1 + guide  # the disabled FAQ chunk is not searchable
    assert (knowledge.searchable_chunks, knowledge.searchable_embedded) == (usable, manual)
    assert knowledge.embedded_percent == math.floor(1000 * manual / usable) / 10
    assert knowledge.embedding_model == current_embedding_model()


def test_chunks_of_a_disabled_source_are_not_counted_as_usable(
    library: dict[str, KnowledgeSource],
) -> None:
    KnowledgeSource.objects.filter(pk=library["manual"].pk).update(enabled=False)

    knowledge = home_dashboard().knowledge

    assert knowledge.searchable_embedded == 0
    assert knowledge.embedded_percent == 0.0


def test_expired_chunks_are_not_counted_as_usable(library: dict[str, KnowledgeSource]) -> None:
    before = home_dashboard().knowledge
    expired = library["manual"].chunks.first()
    KnowledgeChunk.objects.filter(pk=expired.pk).update(
        valid_until=timezone.now() - timedelta(days=1)
    )

    after = home_dashboard().knowledge

    assert after.searchable_chunks == KnowledgeChunk.objects.searchable().count()
    assert after.searchable_chunks == before.searchable_chunks - 1
    assert after.searchable_embedded == before.searchable_embedded - 1


def test_an_empty_knowledge_base_shows_zeros_not_an_error() -> None:
    knowledge = home_dashboard().knowledge

    assert (knowledge.sources, knowledge.chunks, knowledge.embedded_percent) == (0, 0, 0.0)
    assert [row.count for row in knowledge.sources_by_status] == [0, 0, 0, 0]


# --- Questions --------------------------------------------------------------------------------


def test_questions_today_start_at_midnight_in_the_site_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Asia/Tokyo"
    midnight = local_midnight("Asia/Tokyo")
    make_answer(
        "What is the capital of France?",
        outcome=AnswerOutcome.NO_RELEVANT,
        asked_at=midnight - timedelta(seconds=1),
    )
    make_answer("How do I replace the batteries?", asked_at=midnight)
    make_answer("Where is the fuse of the P-200?", outcome=AnswerOutcome.NO_RELEVANT)
    make_answer("What does E-21 mean?", outcome=AnswerOutcome.FAILED)

    dashboard = home_dashboard()

    assert dashboard.today_since == midnight
    assert dashboard.today == timezone.localdate(timezone=ZoneInfo("Asia/Tokyo"))
    assert (dashboard.questions.asked_today, dashboard.questions.unanswered_today) == (3, 1)


def test_not_helpful_answers_wait_in_the_queue_whatever_day_they_were_asked() -> None:
    make_answer(
        "How do I pair my phone?",
        feedback=AnswerFeedback.NOT_HELPFUL,
        asked_at=timezone.now() - timedelta(days=3),
    )
    make_answer("What does E-21 mean?", feedback=AnswerFeedback.HELPFUL)
    make_answer("How do I replace the batteries?")

    questions = home_dashboard().questions

    assert questions.needing_curation == 1
    assert questions.asked_today == 2


# --- Chat sessions ----------------------------------------------------------------------------


def test_open_sessions_are_the_ones_not_archived_or_skipped() -> None:
    make_session("discord:support:t-1")
    newest = make_session("discord:support:t-2")
    session_archive(session_id=make_session("discord:support:t-3").pk)
    session_archive(session_id=make_session("web:bots", [("bot", True, "ping")]).pk)
    assert set(ChatSession.objects.values_list("status", flat=True)) == {
        "active",
        "archived",
        "skipped",
    }

    sessions = home_dashboard().sessions

    assert sessions.open_sessions == 2
    assert sessions.last_active_at == max(
        ChatSession.objects.values_list("last_active_at", flat=True)
    )
    assert sessions.last_active_at >= newest.last_active_at


def test_no_sessions_means_no_last_activity() -> None:
    sessions = home_dashboard().sessions

    assert (sessions.open_sessions, sessions.last_active_at) == (0, None)


# --- Embedding pipeline -----------------------------------------------------------------------


def test_pipeline_shows_backlog_and_dead_letters(library: dict[str, KnowledgeSource]) -> None:
    waiting = library["guide"].chunks.count()

    pipeline = home_dashboard().pipeline

    assert (pipeline.pending, pipeline.dead_letters) == (waiting, 1)
    assert pipeline.embedded_last_hour == sum(
        library[name].chunks.count() for name in ("manual", "faq")
    )
    assert not pipeline.is_paused and pipeline.last_error == ""


def test_a_paused_pipeline_shows_why_until_when_and_its_last_error() -> None:
    pipeline_pause(reason="blocked: quota", error="429 You exceeded your current quota")

    pipeline = home_dashboard().pipeline

    assert pipeline.is_paused and pipeline.paused_reason == "blocked: quota"
    assert pipeline.paused_until > timezone.now()
    assert pipeline.last_error == "429 You exceeded your current quota"
    assert pipeline.last_error_at <= timezone.now()


def test_resuming_the_pipeline_clears_the_pause_and_the_error() -> None:
    pipeline_pause(reason="blocked: quota", error="429")
    pipeline_resume()

    pipeline = home_dashboard().pipeline

    assert not pipeline.is_paused and pipeline.paused_until is None
    assert (pipeline.last_error, pipeline.last_error_at) == ("", None)


# --- Dispatch and cost ------------------------------------------------------------------------


def test_dispatch_figures_count_open_cards_and_orders_by_status() -> None:
    from dispatch.models import CardStatus, ProblemCard, ServiceOrder
    from tests.dispatch.factories import make_card

    card = make_card()
    make_card(description="Another report.")
    ProblemCard.objects.filter(pk=card.pk).update(status=CardStatus.CANCELLED)
    ServiceOrder.objects.create(card=card, address="Da'an")
    figures = dispatch_figures()
    assert figures.open_problem_cards == 1
    counts = {row.status: row.count for row in figures.orders_by_status}
    assert counts["created"] == 1 and sum(counts.values()) == 1
    assert list(counts) == ["created", "assigned", "en_route", "on_site", "completed", "cancelled"]
    assert home_dashboard().dispatch == figures


def test_the_dashboard_takes_a_few_queries_however_many_rows(
    library: dict[str, KnowledgeSource], django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    make_session()
    make_answer("What does E-21 mean?")
    # index_status: 7 (the space state twice, chunks, sources, pipeline, index sizes, the vector
    # indexes' graphs); then the pipeline's last error, the answers and the sessions: one query
    # each; dispatch: open cards, orders by status.
    with django_assert_max_num_queries(12):
        home_dashboard()
