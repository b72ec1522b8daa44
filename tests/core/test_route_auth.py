"""Every API operation, found by walking the ninja API (a new route is covered without editing
this file): 401 without a key or with an unknown one, 403 with a key one scope short, and the
scope each operation asks for matches the rule in README's *Admin users and API keys*."""

import re

import pytest

from config.api import api
from core.auth import ApiKeyAuth
from core.models import ApiScope
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db

# POSTs that only read (or, for feedback, come from the clients that ask): a read key may call
# them. Every other non-GET operation needs write.
READ_SCOPED_POSTS = {
    "knowledge_search",
    "ask",
    "ask_stream",
    "answer_feedback_create",
    "retrieval_test_create",
}
# Operations that need admin: key management, whole-index actions, deleting a person's session.
ADMIN_SCOPED = {
    "api_key_list",
    "api_key_post",
    "api_key_delete",
    "index_rebuild_run",
    "index_clear_run",
    "index_switch_run",
    "dead_letter_retry",
    "session_remove",
}
# The scope just below each one: a key holding only it lacks the operation's scope.
SCOPE_BELOW = {ApiScope.WRITE: ApiScope.READ, ApiScope.ADMIN: ApiScope.WRITE}


def _operations() -> list[tuple[str, str, str, list]]:
    found = []
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            for operation in path_view.operations:
                url = re.sub(r"\{[^}]+\}", "1", f"/api/v1/{prefix}/{path}")
                for method in operation.methods:
                    found.append(
                        (
                            method,
                            re.sub("/+", "/", url),
                            operation.view_func.__name__,
                            operation.auth_callbacks,
                        )
                    )
    return found


OPERATIONS = _operations()
IDS = [f"{method} {url}" for method, url, _, _ in OPERATIONS]
# Every key holds read, so only operations needing more can be refused for a missing scope.
ABOVE_READ = [op for op in OPERATIONS if op[3] and getattr(op[3][0], "scope", None) in SCOPE_BELOW]


def _expected_scope(method: str, name: str) -> str:
    if name in ADMIN_SCOPED:
        return ApiScope.ADMIN
    if method == "GET" or name in READ_SCOPED_POSTS:
        return ApiScope.READ
    return ApiScope.WRITE


def _scope(auth_callbacks: list) -> str:
    assert len(auth_callbacks) == 1 and isinstance(auth_callbacks[0], ApiKeyAuth), auth_callbacks
    return auth_callbacks[0].scope


def _call(client, method: str, url: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.generic(method, url, b"{}", "application/json", headers=headers)


def test_the_walk_finds_every_router():
    names = {name for _, _, name, _ in OPERATIONS}
    assert {"whoami", "source_list", "session_list", "service_order_transition"} <= names
    assert len(OPERATIONS) >= 50


def test_the_listed_exceptions_name_existing_operations():
    names = {name for _, _, name, _ in OPERATIONS}
    assert READ_SCOPED_POSTS <= names
    assert ADMIN_SCOPED <= names


@pytest.mark.parametrize(("method", "url", "name", "auth"), OPERATIONS, ids=IDS)
def test_each_operation_asks_for_the_scope_the_rule_gives(method, url, name, auth):
    assert _scope(auth) == _expected_scope(method, name)


@pytest.mark.parametrize(("method", "url", "name", "auth"), OPERATIONS, ids=IDS)
def test_each_operation_without_a_key_is_401(client, method, url, name, auth):
    assert_error_shape(_call(client, method, url, None), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize(("method", "url", "name", "auth"), OPERATIONS, ids=IDS)
def test_each_operation_with_an_unknown_key_is_401(client, method, url, name, auth):
    assert_error_shape(_call(client, method, url, "kioku_unknown"), 401, "AUTH_INVALID_KEY")


@pytest.mark.parametrize(
    ("method", "url", "name", "auth"), ABOVE_READ, ids=[f"{m} {u}" for m, u, _, _ in ABOVE_READ]
)
def test_each_operation_with_a_key_one_scope_short_is_403(
    client, make_api_key, method, url, name, auth
):
    scope = _scope(auth)
    response = _call(client, method, url, make_api_key(SCOPE_BELOW[scope]))
    body = assert_error_shape(response, 403, "AUTH_FORBIDDEN_SCOPE")
    assert body["details"]["required_scope"] == scope


@pytest.mark.parametrize(("method", "url", "name", "auth"), OPERATIONS, ids=IDS)
def test_each_operation_lets_a_key_with_exactly_its_scope_in(
    client, make_api_key, method, url, name, auth
):
    response = _call(client, method, url, make_api_key(_scope(auth)))
    assert response.status_code not in (401, 403), response.content
