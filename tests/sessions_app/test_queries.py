import pytest

from sessions_app.errors import SessionError
from sessions_app.queries import session_by_key, session_context, session_recent_messages
from tests.sessions_app.factories import LOCK_CHAT, make_session

pytestmark = pytest.mark.django_db


def test_context_is_the_last_messages_oldest_first(settings):
    settings.KIOKU_SESSION_CONTEXT_MESSAGES = 2
    session = make_session()

    context = session_context(session=session)

    assert [m.content for m in context] == [text for _, _, text in LOCK_CHAT[-2:]]


def test_context_limit_overrides_the_setting():
    session = make_session()

    assert len(session_context(session=session, limit=3)) == 3


def test_no_recent_messages_for_a_limit_of_zero():
    session = make_session()

    assert session_recent_messages(session_id=session.pk, limit=0) == []


def test_an_unknown_key_is_session_not_found():
    with pytest.raises(SessionError) as caught:
        session_by_key("web:nobody")

    assert (caught.value.code, caught.value.status) == ("SESSION_NOT_FOUND", 404)
