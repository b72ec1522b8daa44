import pytest

from knowledge.models import KnowledgeSource
from sessions_app.demo import DEMO_SESSIONS, demo_is_loaded, demo_load
from sessions_app.models import ChatSession, SessionStatus

pytestmark = pytest.mark.django_db


def test_demo_sessions_load_with_archived_live_and_skipped_ones():
    assert not demo_is_loaded()

    summary = demo_load()

    assert demo_is_loaded()
    assert ChatSession.objects.count() == len(DEMO_SESSIONS)
    statuses = set(ChatSession.objects.values_list("status", flat=True))
    assert statuses == {SessionStatus.ARCHIVED, SessionStatus.ACTIVE, SessionStatus.SKIPPED}
    sources = KnowledgeSource.objects.filter(source_type="session")
    assert sources.count() == 2
    assert "090-1234-5678" not in " ".join(c.content for s in sources for c in s.chunks.all())
    assert "2 archived" in summary and "1 skipped" in summary
