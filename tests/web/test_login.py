"""Login throttling (django-axes): failed attempts lock the username and the client address;
the lock says why, and a forged X-Forwarded-For neither escapes nor frames it."""

import pytest

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
LOCKED = "Too many failed logins"


def attempt(
    client, password: str, *, username: str = "curator", address: str = "10.0.0.1", **headers
):
    return client.post(
        LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address, headers=headers
    )


def test_the_sixth_wrong_password_is_refused_with_a_clear_message(client, staff_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = attempt(client, "wrong")
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()
    response = attempt(client, "wrong")
    assert response.status_code == 429
    assert LOCKED in response.content.decode()
    assert "blocked for 15 minutes" in response.content.decode()


def test_a_locked_username_refuses_even_the_right_password(client, staff_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "wrong")
    response = attempt(client, "correct-horse-battery")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_forged_x_forwarded_for_does_not_reset_the_count(client, staff_user, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "wrong", X_Forwarded_For=f"203.0.113.{n}")
    response = attempt(client, "correct-horse-battery", X_Forwarded_For="198.51.100.7")
    assert response.status_code == 429


def test_one_address_guessing_many_usernames_is_locked_out(client, staff_user, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "wrong", username=f"someone-{n}", X_Forwarded_For=f"203.0.113.{n}")
    response = attempt(client, "correct-horse-battery")
    assert response.status_code == 429


def test_a_forged_x_forwarded_for_cannot_lock_out_someone_elses_address(
    client, staff_user, django_user_model, settings
):
    django_user_model.objects.create_user("agent", password="agent-pass-123")
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "wrong", username=f"someone-{n}", X_Forwarded_For="10.0.0.2")
    response = attempt(client, "agent-pass-123", username="agent", address="10.0.0.2")
    assert response.status_code == 302


def test_a_successful_login_clears_the_failures(client, staff_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "wrong")
    assert attempt(client, "correct-horse-battery").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "wrong").status_code == 200


def test_the_admin_login_is_throttled_too(client, staff_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            "/admin/login/", {"username": "curator", "password": "wrong"}, REMOTE_ADDR="10.0.0.9"
        )
    response = attempt(client, "correct-horse-battery", address="10.0.0.8")
    assert response.status_code == 429
