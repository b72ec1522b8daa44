"""Every page, found by walking the URL resolver (a new page is covered without editing this
file), needs a login and the permission its view declares (core.pages.permission_required); the
groups of core/permissions.py decide who holds which."""

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import URLPattern, URLResolver, get_resolver

from core.permissions import ADMIN, CURATOR, DISPATCHER, VIEWER

pytestmark = pytest.mark.django_db

# The documented exceptions: the health check, logging in and out, and what has its own gate
# (the admin asks for a staff login; the API for a key: tests/core/test_route_auth.py).
PUBLIC = {"healthz", "login", "logout"}
OWN_GATE = ("admin/", "api/", "integrations/")  # integrations: the sender's signature
# Pages any logged-in user may open: the dashboard's figures only.
LOGIN_ONLY = {"core:home"}


def _example(route: str) -> str:
    """A concrete path for a route: every converter gets a value no row has."""
    return re.sub(r"<(?:(\w+):)?\w+>", lambda m: "x" if m.group(1) in (None, "str") else "1", route)


def _pages(patterns=None, prefix: str = "", namespace: str = "") -> list[tuple[str, str, object]]:
    found = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            if (prefix + route).startswith(OWN_GATE):
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _pages(entry.url_patterns, prefix + route, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}"
            if name not in PUBLIC:
                found.append((name, "/" + _example(prefix + route), entry.callback))
    return found


def _required(view) -> tuple[str, ...]:
    return getattr(view, "required_permissions", ())


PAGES = _pages()
IDS = [name for name, _, _ in PAGES]
GATED = [page for page in PAGES if _required(page[2])]


def test_the_walk_finds_the_pages_of_every_app():
    names = set(IDS)
    assert {"core:home", "knowledge:source-list", "sessions_app:session-list"} <= names
    assert {"dispatch:order-step", "knowledge:index-switch"} <= names
    assert not names & PUBLIC


@pytest.mark.parametrize(("name", "url", "view"), PAGES, ids=IDS)
def test_each_page_sends_an_anonymous_visitor_to_the_login(client, name, url, view):
    responses = [client.get(url), client.post(url)]
    # A view allowing one method answers the other with 405 before anything else.
    assert all(r.status_code in (302, 405) for r in responses), [r.status_code for r in responses]
    redirects = [r for r in responses if r.status_code == 302]
    assert redirects and all(r["Location"].startswith("/accounts/login/?next=") for r in redirects)


@pytest.mark.parametrize(("name", "url", "view"), PAGES, ids=IDS)
def test_each_page_declares_a_permission_unless_it_is_the_dashboard(name, url, view):
    assert bool(_required(view)) != (name in LOGIN_ONLY)


@pytest.mark.parametrize(("name", "url", "view"), GATED, ids=[page[0] for page in GATED])
def test_each_page_refuses_a_user_without_its_permission(client, make_user, name, url, view):
    client.force_login(make_user("nobody", is_staff=True))
    statuses = {client.get(url).status_code, client.post(url).status_code}
    assert statuses <= {403, 405} and 403 in statuses


@pytest.mark.parametrize(("name", "url", "view"), PAGES, ids=IDS)
def test_each_page_lets_in_a_user_holding_just_its_permission(client, make_user, name, url, view):
    user = make_user("holder")
    for perm in _required(view):
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client.force_login(user)
    # No row has id 1 here: a 404 (or a form error) shows the permission let the request in.
    for response in (client.get(url), client.post(url)):
        assert response.status_code != 403
        assert not response.get("Location", "").startswith("/accounts/login/")


# --- The groups -----------------------------------------------------------------------------------


def _group_perms(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_the_migration_created_the_four_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {VIEWER, CURATOR, DISPATCHER, ADMIN}


def test_a_viewer_may_open_every_reading_page_and_no_action():
    viewer = _group_perms(VIEWER)
    for name, _, view in PAGES:
        required = set(_required(view))
        is_reading = all(perm.split(".")[1].startswith("view_") for perm in required)
        assert (required <= viewer) == is_reading, name


def test_curator_and_dispatcher_do_only_their_own_work():
    curator, dispatcher = _group_perms(CURATOR), _group_perms(DISPATCHER)
    assert {"knowledge.manage_index", "dispatch.curate_problemcard"} <= curator
    assert "dispatch.change_order_status" not in curator
    assert "dispatch.change_order_status" in dispatcher
    assert not {"knowledge.change_knowledgechunk", "knowledge.manage_index"} & dispatcher


def test_admin_holds_every_permission():
    assert _group_perms(ADMIN) == {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }


def test_a_flushed_database_gets_the_groups_back_on_migrate(transactional_db):
    # post_migrate (also sent after a flush) keeps the groups of core/permissions.py.
    from django.core.management import call_command

    Group.objects.all().delete()
    call_command("migrate", verbosity=0)
    assert "knowledge.manage_index" in _group_perms(CURATOR)


def test_the_admin_asks_for_a_staff_login_whatever_the_groups(client, make_user):
    assert client.get("/admin/knowledge/knowledgesource/")["Location"].startswith("/admin/login/")
    client.force_login(make_user("not-staff", ADMIN))
    response = client.get("/admin/knowledge/knowledgesource/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(make_user("staff-without-group", is_staff=True))
    assert client.get("/admin/knowledge/knowledgesource/").status_code == 403
