import threading

import pytest
from django.db import connection

from knowledge.embed.spaces import space_state
from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource
from knowledge.search.service import chunk_search
from knowledge.tokens import get_token_counter
from sessions_app.archiver import message_windows, session_archive, sessions_archive_idle
from sessions_app.models import ChatSession, Message, SessionStatus
from sessions_app.services import MessageIn, session_append, session_delete
from tests.sessions_app.factories import LOCK_CHAT, make_session


@pytest.fixture(autouse=True)
def _small_windows(settings):
    settings.KIOKU_SESSION_MIN_USER_MESSAGES = 2
    settings.KIOKU_SESSION_WINDOW_TOKENS = 60
    settings.KIOKU_SESSION_OVERLAP_MESSAGES = 1
    settings.KIOKU_SESSION_KEEP_MESSAGES = 2
    settings.KIOKU_SESSION_IDLE_MINUTES = 30


def chunk_message_ids(source: KnowledgeSource) -> list[list[int]]:
    return [c.location["message_ids"] for c in source.chunks.order_by("ordinal")]


# --- Sliding window ----------------------------------------------------------------------------


def test_windows_start_with_the_last_messages_of_the_previous_window():
    windows = message_windows([10] * 7, first_new=0, max_tokens=30, overlap=1)

    assert windows == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]


def test_windows_overlap_yields_to_a_message_that_would_not_fit_with_it():
    windows = message_windows([10, 10, 15, 10], first_new=0, max_tokens=30, overlap=2)

    # Message 2 does not fit with both overlap messages: the older one gives way.
    assert windows == [[0, 1], [1, 2], [2, 3]]


def test_windows_of_a_later_archive_start_with_already_archived_messages():
    windows = message_windows([10] * 5, first_new=3, max_tokens=30, overlap=2)

    assert windows == [[1, 2, 3], [2, 3, 4]]


def test_every_window_adds_a_new_message_even_when_one_is_larger_than_the_budget():
    windows = message_windows([50, 50, 5], first_new=0, max_tokens=30, overlap=3)

    assert windows == [[0], [1], [2]]


# --- Skip rules --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_bot_only_session_is_skipped_with_its_reason():
    session = make_session("web:bots", [("bot-a", True, "ping"), ("bot-b", True, "pong")])

    outcome = session_archive(session_id=session.pk)

    session.refresh_from_db()
    assert outcome.outcome == "skipped" and outcome.reason == "Only bot messages"
    assert session.status == SessionStatus.SKIPPED and session.skip_reason == "bot_only"
    assert session.messages.count() == 2 and session.archived_through_id == 0
    assert not KnowledgeSource.objects.exists()


@pytest.mark.django_db
def test_a_session_with_too_few_user_messages_is_skipped(settings):
    settings.KIOKU_SESSION_MIN_USER_MESSAGES = 3
    session = make_session("web:short", [("alice", False, "hello?"), ("bot", True, "Hi!")])

    outcome = session_archive(session_id=session.pk)

    session.refresh_from_db()
    assert outcome.outcome == "skipped"
    assert session.skip_reason == "too_few_user_messages"
    assert not KnowledgeSource.objects.exists()


@pytest.mark.django_db
def test_a_skipped_session_that_gets_more_messages_is_archived_with_all_of_them(settings):
    settings.KIOKU_SESSION_MIN_USER_MESSAGES = 2
    session = make_session("web:grow", [("alice", False, "E-21 on my KG-200")])
    assert session_archive(session_id=session.pk).outcome == "skipped"

    session_append(
        key="web:grow", messages=[MessageIn(content="It rubs the strike", author="alice")]
    )
    outcome = session_archive(session_id=session.pk)

    assert outcome.outcome == "archived" and outcome.messages == 2


# --- Archiving ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_archive_builds_a_session_source_with_overlapping_chunks():
    session = make_session("discord:support:t-1", platform="discord", channel="support")
    ids = list(session.messages.order_by("id").values_list("id", flat=True))

    outcome = session_archive(session_id=session.pk)

    source = KnowledgeSource.objects.get()
    assert outcome.outcome == "archived" and outcome.source_id == source.pk
    assert source.source_type == "session" and source.uri == f"session://{session.pk}"
    assert source.metadata["channel"] == "support"
    assert source.metadata["platform"] == "discord"
    assert source.metadata["participants"] == ["alice"]
    windows = chunk_message_ids(source)
    assert sorted({i for w in windows for i in w}) == ids
    # のりしろ: each chunk starts with the last message of the one before.
    for previous, following in zip(windows, windows[1:], strict=False):
        assert following[0] == previous[-1]
    assert len(windows) >= 2
    first = source.chunks.order_by("ordinal").first()
    assert first.content.startswith("alice: My KG-200 lock shows E-21")
    assert first.location["started_at"] <= first.location["ended_at"]


@pytest.mark.django_db
def test_archive_keeps_the_last_k_messages_as_live_context():
    session = make_session()
    ids = list(session.messages.order_by("id").values_list("id", flat=True))

    session_archive(session_id=session.pk)

    session.refresh_from_db()
    assert list(session.messages.order_by("id").values_list("id", flat=True)) == ids[-2:]
    assert session.status == SessionStatus.ARCHIVED
    assert session.archived_through_id == ids[-1]
    assert session.archived_message_count == 5


@pytest.mark.django_db
def test_rerunning_the_archiver_never_duplicates_the_source():
    session = make_session()
    session_archive(session_id=session.pk)
    chunks = list(KnowledgeChunk.objects.values_list("id", "content"))

    again = session_archive(session_id=session.pk)

    assert again.outcome == "unchanged"
    assert KnowledgeSource.objects.count() == 1
    assert list(KnowledgeChunk.objects.values_list("id", "content")) == chunks


@pytest.mark.django_db
def test_new_messages_are_appended_to_the_same_source_keeping_earlier_embeddings():
    session = make_session()
    session_archive(session_id=session.pk)
    active = space_state().active  # only vectors of the space search reads are reused
    KnowledgeChunk.objects.update(
        embedding=[0.1] * active.dimensions,
        embedding_status=EmbeddingStatus.DONE,
        embedding_model=active.model,
    )
    before = list(KnowledgeChunk.objects.order_by("ordinal").values_list("content", flat=True))
    session_append(
        key=session.key,
        messages=[
            MessageIn(content="The E-21 came back after a week.", author="bob"),
            MessageIn(content="Please book a technician.", author="bob"),
        ],
    )

    outcome = session_archive(session_id=session.pk)

    source = KnowledgeSource.objects.get()
    after = list(source.chunks.order_by("ordinal"))
    assert outcome.outcome == "archived" and outcome.messages == 2
    assert [c.content for c in after[: len(before)]] == before
    assert all(c.embedding_status == EmbeddingStatus.DONE for c in after[: len(before)])
    assert after[-1].embedding_status == EmbeddingStatus.PENDING
    # The new chunk starts with the last message already archived (kept in the session).
    assert after[len(before)].content.startswith("alice: Adjusted it")
    assert sorted(source.metadata["participants"]) == ["alice", "bob"]
    # Earlier and new chunks carry counts the embedding pipeline may pack requests with.
    counter = get_token_counter()
    assert {c.token_counter for c in after} == {counter.name}
    assert all(c.token_count == counter.count(c.content) for c in after)


@pytest.mark.django_db
def test_personal_data_is_masked_in_chunks_and_kept_raw_in_the_session(settings):
    settings.KIOKU_SESSION_PII_PATTERNS = [r"\bMEMBER-\d{4}\b"]
    settings.KIOKU_SESSION_KEEP_MESSAGES = 10
    session = make_session(
        "web:pii",
        [
            ("alice", False, "Call me at +81 90-1234-5678 or mail alice.k@example.co.jp"),
            (
                "alice",
                False,
                "My member number is MEMBER-4821; the lock is a KG-200 from 2024-03-15",
            ),
        ],
    )

    session_archive(session_id=session.pk)

    text = "\n".join(KnowledgeChunk.objects.values_list("content", flat=True))
    assert "[phone]" in text and "[email]" in text and "[redacted]" in text
    assert "5678" not in text and "example.co.jp" not in text and "4821" not in text
    assert "KG-200" in text and "2024-03-15" in text
    raw = " ".join(session.messages.values_list("content", flat=True))
    assert "+81 90-1234-5678" in raw and "MEMBER-4821" in raw


@pytest.mark.django_db
def test_an_archive_repeating_existing_session_knowledge_is_linked_not_stored():
    first = make_session("discord:support:t-1")
    session_archive(session_id=first.pk)
    copy = make_session("discord:support:t-2")  # the same conversation, posted again

    outcome = session_archive(session_id=copy.pk)

    copy.refresh_from_db()
    original = KnowledgeSource.objects.get()
    assert outcome.outcome == "linked"
    assert copy.duplicate_of_id == original.pk and copy.source_id is None
    assert "Near-duplicate" in copy.archive_note
    assert copy.status == SessionStatus.ARCHIVED


@pytest.mark.django_db
def test_a_different_conversation_is_not_linked():
    make_session("discord:support:t-1")
    session_archive(session_id=ChatSession.objects.get().pk)
    other = make_session(
        "discord:support:t-3",
        [
            ("carol", False, "How do I pair the Lumio LM-5 with the app?"),
            ("carol", False, "Bluetooth is on, the app finds nothing."),
        ],
    )

    assert session_archive(session_id=other.pk).outcome == "archived"
    assert KnowledgeSource.objects.count() == 2


@pytest.mark.django_db
def test_delete_removes_the_archived_knowledge_too():
    session = make_session()
    session_archive(session_id=session.pk)

    counts = session_delete(session=session)

    assert counts["sources"] == 1
    assert not KnowledgeSource.objects.exists() and not KnowledgeChunk.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_deleting_a_linked_session_keeps_the_other_sessions_knowledge():
    session_archive(session_id=make_session("discord:support:t-1").pk)
    copy = make_session("discord:support:t-2")
    session_archive(session_id=copy.pk)

    session_delete(session=copy)

    assert KnowledgeSource.objects.count() == 1


@pytest.mark.django_db
def test_archived_chunks_are_found_by_search_with_channel_and_user_filters():
    session_archive(
        session_id=make_session("discord:support:t-1", platform="discord", channel="support").pk
    )
    session_archive(
        session_id=make_session(
            "slack:sales",
            [("dave", False, "A customer asks about strike plate prices"), ("dave", False, "ok")],
        ).pk
    )

    by_channel = chunk_search("strike plate", mode="keyword", filters={"channel": "support"})
    by_user = chunk_search("strike plate", mode="keyword", filters={"user": "dave"})
    nobody = chunk_search("strike plate", mode="keyword", filters={"user": "mallory"})

    assert by_channel.hits and {h.source_id for h in by_channel.hits} == {
        ChatSession.objects.get(key="discord:support:t-1").source_id
    }
    assert by_user.hits and all("dave" in h.content for h in by_user.hits)
    assert nobody.hits == []


# --- The schedule ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schedule_archives_idle_sessions_only():
    idle = make_session("web:idle", idle_minutes=45)
    busy = make_session("web:busy", LOCK_CHAT[:2] + [("bob", False, "still typing")])

    run = sessions_archive_idle()

    assert [(o.session_id, o.outcome) for o in run.outcomes] == [(idle.pk, "archived")]
    busy.refresh_from_db()
    assert busy.status == SessionStatus.ACTIVE and busy.messages.count() == 3


# --- Concurrency (two connections, real transactions) ------------------------------------------


def _append_from_another_connection(key: str, text: str) -> None:
    def work():
        try:
            session_append(key=key, messages=[MessageIn(content=text, author="bob")])
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_message_appended_while_archiving_is_archived_by_the_retry():
    session = make_session()

    def append_once(attempt: int) -> None:
        if attempt == 1:
            _append_from_another_connection(session.key, "Meanwhile: the E-21 is back.")

    outcome = session_archive(session_id=session.pk, before_write=append_once)

    late = Message.objects.get(content="Meanwhile: the E-21 is back.")
    session.refresh_from_db()
    assert outcome.outcome == "archived" and outcome.attempts == 2 and outcome.messages == 6
    assert session.archived_through_id == late.pk
    assert any(late.pk in ids for ids in chunk_message_ids(KnowledgeSource.objects.get()))


@pytest.mark.django_db(transaction=True)
def test_a_message_appended_while_the_schedule_archives_stays_for_the_next_archive():
    session = make_session(idle_minutes=45)

    def append_once(attempt: int) -> None:
        if attempt == 1:
            _append_from_another_connection(session.key, "Wait, one more thing.")

    outcome = session_archive(session_id=session.pk, require_idle=True, before_write=append_once)

    session.refresh_from_db()
    assert outcome.outcome == "not_idle"
    assert session.status == SessionStatus.ACTIVE and session.archived_through_id == 0
    assert session.messages.count() == 6
    assert not KnowledgeSource.objects.exists()
