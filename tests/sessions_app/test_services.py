import pytest

from sessions_app.errors import SessionError
from sessions_app.models import ChatSession, Message, SessionStatus
from sessions_app.services import MessageIn, session_append, session_delete, session_key_for
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db


def test_first_append_creates_the_session_from_its_key():
    result = session_append(
        key="discord:guild-7:thread-9", messages=[MessageIn(content="Hello", author="alice")]
    )

    session = ChatSession.objects.get(key="discord:guild-7:thread-9")
    assert result.created is True and result.accepted == 1
    assert (session.platform, session.channel, session.thread) == ("discord", "guild-7", "thread-9")
    assert session.participants == ["alice"]
    assert session.status == SessionStatus.ACTIVE
    assert [m.content for m in result.context] == ["Hello"]


def test_a_later_append_reuses_the_session_and_bumps_its_version():
    first = session_append(key="web:chat-1", messages=[MessageIn(content="one", author="bo")])
    second = session_append(
        key="web:chat-1",
        messages=[MessageIn(content="two", author="ann"), MessageIn(content="three", author="bo")],
    )

    session = ChatSession.objects.get(key="web:chat-1")
    assert second.created is False and second.session_id == first.session_id
    assert second.version == first.version + 1 == session.version
    assert session.participants == ["bo", "ann"]
    assert [m.content for m in second.context] == ["one", "two", "three"]


def test_appending_the_same_external_id_again_stores_it_once():
    message = MessageIn(content="The lock beeps three times", author="alice", external_id="m-1")
    session_append(key="line:room-3", messages=[message])

    retry = session_append(
        key="line:room-3", messages=[message, MessageIn(content="And then?", external_id="m-2")]
    )

    assert retry.accepted == 1
    assert retry.duplicate_external_ids == ["m-1"]
    assert list(Message.objects.values_list("external_id", flat=True)) == ["m-1", "m-2"]


def test_a_batch_repeating_an_external_id_stores_the_first():
    result = session_append(
        key="line:room-4",
        messages=[
            MessageIn(content="first", external_id="x"),
            MessageIn(content="again", external_id="x"),
            MessageIn(content="no id"),
            MessageIn(content="no id"),
        ],
    )

    assert result.accepted == 3
    assert result.duplicate_external_ids == ["x"]
    assert sorted(Message.objects.values_list("content", flat=True)) == ["first", "no id", "no id"]


def test_bulk_append_keeps_the_order_and_returns_the_last_n_as_context(settings):
    settings.KIOKU_SESSION_CONTEXT_MESSAGES = 3
    messages = [MessageIn(content=f"message {n}", author="alice") for n in range(50)]

    result = session_append(key="slack:C1", messages=messages)

    assert result.accepted == 50
    assert [m.content for m in result.context] == ["message 47", "message 48", "message 49"]
    stored = list(Message.objects.order_by("id").values_list("content", flat=True))
    assert stored == [f"message {n}" for n in range(50)]


def test_bot_authors_are_not_listed_as_participants():
    make_session("web:chat-9")

    assert ChatSession.objects.get(key="web:chat-9").participants == ["alice"]


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([], "SESSION_NO_MESSAGES"),
        ([MessageIn(content="  ")], "SESSION_EMPTY_MESSAGE"),
        ([MessageIn(content="hi", role="moderator")], "SESSION_INVALID_ROLE"),
        ([MessageIn(content="x" * 40_000)], "SESSION_MESSAGE_TOO_LONG"),
    ],
)
def test_append_refuses_bad_messages(messages, code):
    with pytest.raises(SessionError) as caught:
        session_append(key="web:chat-2", messages=messages)

    assert caught.value.code == code
    assert not ChatSession.objects.exists()


def test_append_refuses_more_messages_than_the_limit(settings):
    settings.KIOKU_SESSION_MAX_APPEND = 3

    with pytest.raises(SessionError) as caught:
        session_append(key="web:chat-2", messages=[MessageIn(content="m")] * 4)

    assert caught.value.code == "SESSION_TOO_MANY_MESSAGES"
    assert caught.value.status == 413
    assert caught.value.details == {"count": 4, "limit": 3}


@pytest.mark.parametrize("key", ["", "has space", "a/b", "x" * 201])
def test_append_refuses_invalid_keys(key):
    with pytest.raises(SessionError) as caught:
        session_append(key=key, messages=[MessageIn(content="hi")])

    assert caught.value.code == "SESSION_INVALID_KEY"


def test_key_for_joins_platform_channel_and_thread():
    assert session_key_for(platform="discord", channel="123", thread="") == "discord:123"
    assert session_key_for(platform="discord", channel="123", thread="9") == "discord:123:9"
    with pytest.raises(SessionError):
        session_key_for(platform="discord", channel="")


def test_delete_removes_the_session_and_its_messages():
    session = make_session()

    counts = session_delete(session=session)

    assert counts == {"messages": 5, "sources": 0}
    assert not ChatSession.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_append_is_one_round_trip_and_all_or_nothing():
    from django.db import DatabaseError, connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        result = session_append(
            key="slack:T1:C9",
            messages=[MessageIn(content="One", external_id="m1"), MessageIn(content="Two")],
        )
    assert len(queries.captured_queries) == 1  # no BEGIN/COMMIT: one implicit transaction
    assert [m.content for m in result.context] == ["One", "Two"]  # sees its own messages

    # A message the database refuses takes the session's bump with it.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$;"
            "CREATE TRIGGER refuse_messages BEFORE INSERT ON sessions_app_message "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    try:
        with pytest.raises(DatabaseError):
            session_append(key="slack:T1:C9", messages=[MessageIn(content="Three")])
        with pytest.raises(DatabaseError):
            session_append(key="slack:T1:C10", messages=[MessageIn(content="New")])
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER refuse_messages ON sessions_app_message; DROP FUNCTION refuse()"
            )
    session = ChatSession.objects.get(key="slack:T1:C9")
    assert session.version == result.version  # not bumped by the refused append
    assert not ChatSession.objects.filter(key="slack:T1:C10").exists()
    assert [m.content for m in session.messages.order_by("id")] == ["One", "Two"]
