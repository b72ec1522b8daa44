"""Demo users: one staff user per group, created once, each able to log in as that role."""

import pytest

from core.demo import DEMO_USERS, demo_users_ensure

pytestmark = pytest.mark.django_db


def test_demo_users_are_created_once_each_in_its_group(client, django_user_model):
    created = demo_users_ensure()
    assert set(created) == set(DEMO_USERS.values())
    assert demo_users_ensure() == {}
    for group, username in DEMO_USERS.items():
        user = django_user_model.objects.get(username=username)
        assert user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [group]
    # Through the login form: django-axes guards authenticate() and wants the request.
    response = client.post(
        "/accounts/login/", {"username": "demo-viewer", "password": created["demo-viewer"]}
    )
    assert response.status_code == 302
    assert client.get("/knowledge/sources/").status_code == 200
    assert client.post("/knowledge/index/clear/").status_code == 403
