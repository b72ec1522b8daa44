"""The groups at work on real rows: a plain staff viewer is refused every curator and dispatch
action with 403 and sees none of their buttons; the curator and the dispatcher each do only their
own work; the admin's actions ask for the same permissions."""

import pytest

from dispatch.models import OrderStatus, ServiceOrder
from knowledge.models import KnowledgeChunk, KnowledgeSource
from sessions_app.models import ChatSession
from tests.dispatch.factories import make_order, make_technician, order_in_status
from tests.knowledge.factories import make_source
from tests.sessions_app.factories import make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_viewer(client, make_user):
    client.force_login(make_user("vera", "viewer", is_staff=True))
    return client


@pytest.fixture
def dispatcher(client, make_user):
    client.force_login(make_user("dan", "dispatcher", is_staff=True))
    return client


@pytest.fixture
def curator_only(client, make_user):
    client.force_login(make_user("cora", "curator", is_staff=True))
    return client


def test_a_staff_viewer_cannot_edit_or_flag_a_chunk(staff_viewer):
    chunk = make_source().chunks.first()
    edit = staff_viewer.post(f"/knowledge/chunks/{chunk.pk}/edit/", {"content": "Vandalised."})
    flags = staff_viewer.post(f"/knowledge/chunks/{chunk.pk}/flags/", {"enabled": ""})
    assert (edit.status_code, flags.status_code) == (403, 403)
    chunk.refresh_from_db()
    assert chunk.content != "Vandalised." and chunk.enabled


def test_a_staff_viewer_cannot_disable_a_source(staff_viewer):
    source = make_source()
    response = staff_viewer.post(f"/knowledge/sources/{source.pk}/enabled/", {"enabled": ""})
    assert response.status_code == 403
    assert KnowledgeSource.objects.get(pk=source.pk).enabled


def test_a_staff_viewer_cannot_delete_or_archive_a_session(staff_viewer):
    session = make_session()
    assert staff_viewer.post(f"/sessions/{session.key}/delete/").status_code == 403
    assert staff_viewer.post(f"/sessions/{session.key}/archive/").status_code == 403
    assert ChatSession.objects.filter(pk=session.pk).exists()


@pytest.mark.parametrize("action", ["rebuild", "clear", "switch"])
def test_a_staff_viewer_cannot_rebuild_clear_or_switch_the_index(staff_viewer, action):
    make_source()
    chunks = KnowledgeChunk.objects.count()
    assert staff_viewer.post(f"/knowledge/index/{action}/").status_code == 403
    assert KnowledgeChunk.objects.count() == chunks


def test_a_staff_viewer_cannot_change_an_order_status(staff_viewer):
    order = make_order()
    step = {"to": "cancelled", "version": order.version, "note": "Not mine to cancel."}
    assert staff_viewer.post(f"/dispatch/orders/{order.pk}/step/", step).status_code == 403
    assert ServiceOrder.objects.get(pk=order.pk).status == OrderStatus.CREATED


def test_a_staff_viewer_sees_no_action_buttons(staff_viewer):
    source = make_source()
    chunk = source.chunks.first()
    session = make_session()
    order = make_order()
    pages = [
        (f"/knowledge/sources/{source.pk}/", f"/knowledge/sources/{source.pk}/enabled/"),
        (f"/knowledge/sources/{source.pk}/", f"/knowledge/chunks/{chunk.pk}/edit/"),
        ("/knowledge/sources/", "/knowledge/sources/upload/"),
        ("/knowledge/index/", "/knowledge/index/rebuild/"),
        (f"/sessions/{session.key}/", f"/sessions/{session.key}/delete/"),
        (f"/dispatch/orders/{order.pk}/", f"/dispatch/orders/{order.pk}/step/"),
        (f"/dispatch/cases/{order.card_id}/", f"/dispatch/cases/{order.card_id}/diagnose/"),
    ]
    for page, action in pages:
        response = staff_viewer.get(page)
        assert response.status_code == 200, page
        assert action not in response.content.decode(), page


def test_the_curator_sees_the_curation_buttons_but_not_the_dispatch_ones(curator_only):
    source = make_source()
    session = make_session()
    order = make_order()
    source_page = curator_only.get(f"/knowledge/sources/{source.pk}/").content.decode()
    assert f"/knowledge/sources/{source.pk}/enabled/" in source_page
    assert f"/knowledge/chunks/{source.chunks.first().pk}/edit/" in source_page
    assert (
        f"/sessions/{session.key}/delete/"
        in curator_only.get(f"/sessions/{session.key}/").content.decode()
    )
    assert "/knowledge/index/rebuild/" in curator_only.get("/knowledge/index/").content.decode()
    order_page = curator_only.get(f"/dispatch/orders/{order.pk}/").content.decode()
    assert f"/dispatch/orders/{order.pk}/step/" not in order_page


def test_the_curator_may_not_move_an_order(curator_only):
    order = make_order()
    step = {"to": "cancelled", "version": order.version, "note": "x"}
    assert curator_only.post(f"/dispatch/orders/{order.pk}/step/", step).status_code == 403


def test_the_dispatcher_moves_an_order_and_may_not_curate(dispatcher):
    technician = make_technician("Lin", areas=["Taipei Da'an"], skills={})
    order = make_order()
    assert (
        f"/dispatch/orders/{order.pk}/step/"
        in dispatcher.get(f"/dispatch/orders/{order.pk}/").content.decode()
    )
    step = {"to": "assigned", "version": order.version, "technician_id": technician.pk}
    assert dispatcher.post(f"/dispatch/orders/{order.pk}/step/", step).status_code == 302
    assert ServiceOrder.objects.get(pk=order.pk).status == OrderStatus.ASSIGNED
    source = make_source()
    assert dispatcher.post(f"/knowledge/sources/{source.pk}/enabled/", {}).status_code == 403
    assert dispatcher.post("/knowledge/index/clear/").status_code == 403
    completed = order_in_status(OrderStatus.COMPLETED)
    assert (
        f"/dispatch/cases/{completed.card_id}/curate/"
        not in dispatcher.get(f"/dispatch/cases/{completed.card_id}/").content.decode()
    )


# --- The admin ------------------------------------------------------------------------------------


def _actions(client, changelist: str) -> set[str]:
    response = client.get(changelist)
    assert response.status_code == 200
    form = response.context["action_form"]  # None: no action is offered
    return {value for value, _ in form.fields["action"].choices} - {""} if form else set()


def test_the_admin_offers_a_staff_viewer_no_action(staff_viewer):
    make_source()
    make_session()
    make_order()
    for changelist in (
        "/admin/knowledge/knowledgesource/",
        "/admin/knowledge/knowledgechunk/",
        "/admin/sessions_app/chatsession/",
        "/admin/dispatch/problemcard/",
        "/admin/dispatch/serviceorder/",
        "/admin/knowledge/answer/",
    ):
        assert _actions(staff_viewer, changelist) == set(), changelist


def test_a_staff_viewer_posting_an_admin_action_deletes_nothing(staff_viewer):
    source = make_source()
    response = staff_viewer.post(
        "/admin/knowledge/knowledgesource/",
        {"action": "delete_with_chunks", "_selected_action": [source.pk]},
    )
    assert response.status_code in (200, 302)
    assert KnowledgeSource.objects.filter(pk=source.pk).exists()


def test_the_admin_offers_each_group_its_own_actions(client, make_user):
    make_source()
    make_order()
    client.force_login(make_user("cora", "curator", is_staff=True))
    assert "delete_with_chunks" in _actions(client, "/admin/knowledge/knowledgesource/")
    assert {"disable_case", "enable_case"} <= _actions(client, "/admin/dispatch/problemcard/")
    assert "cancel" not in _actions(client, "/admin/dispatch/serviceorder/")
    client.force_login(make_user("dan", "dispatcher", is_staff=True))
    assert "delete_with_chunks" not in _actions(client, "/admin/knowledge/knowledgesource/")
    assert "cancel" in _actions(client, "/admin/dispatch/serviceorder/")
    assert "disable_case" not in _actions(client, "/admin/dispatch/problemcard/")


# --- The upgrade ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_staff_able_to_do_what_they_did(django_user_model):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("core", "0002_api_keys")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    django_user_model.objects.create(username="old-staff", is_staff=True)
    django_user_model.objects.create(username="old-agent")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    staff = django_user_model.objects.get(username="old-staff")
    assert set(staff.groups.values_list("name", flat=True)) == {"curator", "dispatcher"}
    assert staff.has_perm("knowledge.manage_index") and staff.has_perm(
        "dispatch.change_order_status"
    )
    assert not django_user_model.objects.get(username="old-agent").groups.exists()
