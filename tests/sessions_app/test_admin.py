import pytest

from knowledge.models import KnowledgeSource
from sessions_app.models import ChatSession, SessionStatus
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@x.invalid", "pw"))
    return client


def test_the_change_page_shows_messages_inline(admin_client):
    session = make_session()

    body = admin_client.get(
        f"/admin/sessions_app/chatsession/{session.pk}/change/"
    ).content.decode()

    assert "My KG-200 lock shows E-21" in body


def test_the_list_filters_by_status_and_platform(admin_client):
    make_session("discord:support:t-1")
    make_session("slack:sales")

    body = admin_client.get("/admin/sessions_app/chatsession/?platform=slack").content.decode()

    assert "slack:sales" in body and "discord:support:t-1" not in body


def test_the_archive_action_archives_the_selected_sessions(admin_client):
    session = make_session()

    admin_client.post(
        "/admin/sessions_app/chatsession/",
        {"action": "archive_now", "_selected_action": [session.pk]},
    )

    session.refresh_from_db()
    assert session.status == SessionStatus.ARCHIVED and session.source_id is not None


def test_the_delete_action_removes_sessions_with_their_knowledge(admin_client):
    session = make_session()
    admin_client.post(
        "/admin/sessions_app/chatsession/",
        {"action": "archive_now", "_selected_action": [session.pk]},
    )

    admin_client.post(
        "/admin/sessions_app/chatsession/",
        {"action": "delete_with_knowledge", "_selected_action": [session.pk]},
    )

    assert not ChatSession.objects.exists() and not KnowledgeSource.objects.exists()
