"""core/throttle.py: API keys are throttled at KIOKU_API_RATE, whatever X-Forwarded-For says."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_a_minute(settings):
    settings.KIOKU_API_RATE = "3/min"


def test_a_key_over_the_rate_gets_429_with_retry_after(api, three_a_minute):
    for _ in range(3):
        assert api.get("/api/v1/whoami").status_code == 200
    response = api.get("/api/v1/whoami")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["code"] == "RATE_LIMITED"
    assert body["details"]["rate"] == "3/min"


def test_a_spoofed_forwarded_for_does_not_reset_the_count(api, three_a_minute):
    statuses = [
        api.get("/api/v1/whoami", headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code
        for n in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_each_key_has_its_own_count(api_as, three_a_minute):
    first, second = api_as("read"), api_as("read")
    for _ in range(3):
        first.get("/api/v1/whoami")
    assert first.get("/api/v1/whoami").status_code == 429
    assert second.get("/api/v1/whoami").status_code == 200


def test_the_count_is_kept_in_the_database_for_every_web_process(api, three_a_minute):
    # Every process reads the same table: the count is not a process's own.
    from django.db import connection

    for _ in range(3):
        api.get("/api/v1/whoami")
    assert api.get("/api/v1/whoami").status_code == 429
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM kioku_shared_cache WHERE cache_key LIKE %s", ["%api_key%"]
        )
        assert cursor.fetchone()[0] == 1
        cursor.execute("DELETE FROM kioku_shared_cache")
    assert api.get("/api/v1/whoami").status_code == 200
