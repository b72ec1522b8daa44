"""core/throttle.py: API keys are throttled at KIOKU_API_RATE, whatever X-Forwarded-For says."""

from unittest import mock

import pytest
from django.db import connection

from core.models import ApiRateWindow, hash_api_key
from core.throttle import rate_windows_prune, retry_after

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
    for _ in range(3):
        api.get("/api/v1/whoami")
    assert api.get("/api/v1/whoami").status_code == 429
    window = ApiRateWindow.objects.get()
    assert window.hits == 4  # the refused request counts too
    assert window.bucket.endswith(":60") and window.window_start % 60 == 0
    ApiRateWindow.objects.all().delete()
    assert api.get("/api/v1/whoami").status_code == 200


def test_the_previous_window_still_counts_for_the_part_inside_the_last_period(api, settings):
    """The sliding estimate: 10 hits in the previous minute, 15 s into this one, still weigh
    10 × 45/60 = 7.5, so 2 more fit under 10/min and the third is refused."""
    settings.KIOKU_API_RATE = "10/min"
    now = 1_800_000_015.0  # 15 s into a minute
    bucket = f"{hash_api_key(api.key)[:32]}:60"
    ApiRateWindow.objects.create(
        bucket=bucket, window_start=1_800_000_000 - 60, expires_at=1_800_000_060, hits=10
    )
    with mock.patch("core.throttle.time.time", return_value=now):
        statuses = [api.get("/api/v1/whoami").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        wait = api.get("/api/v1/whoami").json()["details"]["retry_after_seconds"]
    # 4 hits now: room for one more once 10 × (1 − x) + 4 ≤ 9, i.e. x ≥ 0.5 of the minute.
    assert wait == pytest.approx(15.0)


def test_retry_after_when_the_current_window_alone_is_full():
    # 3/min, 5 hits 20 s into the window: the rest of this minute, then until 5 × (1 − x) ≤ 2.
    assert retry_after(allowed=3, period=60, current=5, previous=0, elapsed=20) == pytest.approx(
        40 + 60 * (1 - 2 / 5)
    )
    # Only the previous window in the way: until its weight has slid out.
    assert retry_after(allowed=3, period=60, current=1, previous=4, elapsed=0) == pytest.approx(
        60 * (1 - 1 / 4)
    )


def test_expired_windows_are_pruned():
    ApiRateWindow.objects.create(bucket="a:60", window_start=0, expires_at=120, hits=3)
    kept = ApiRateWindow.objects.create(bucket="a:60", window_start=60, expires_at=10**12, hits=1)
    assert rate_windows_prune() == 1
    assert list(ApiRateWindow.objects.all()) == [kept]


def test_one_statement_counts_a_request_in_an_unlogged_table(api):
    statements = []

    def capture(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        api.get("/api/v1/whoami")
    assert len([sql for sql in statements if "core_apiratewindow" in sql]) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'core_apiratewindow'")
        assert cursor.fetchone()[0] == "u"  # no WAL: counting never waits for a flush
