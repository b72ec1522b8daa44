"""The retry rules every OpenAI call shares (embeddings and chat)."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from knowledge.openai_calls import BACKOFF_CAP_SECONDS, retry_after_seconds, retry_wait


def test_retry_wait_honours_the_servers_retry_after():
    assert retry_wait(1, retry_after=3.0, max_wait=20, rng=lambda: 1.0) == 3.0


def test_retry_wait_refuses_a_retry_after_longer_than_the_caller_may_wait():
    assert retry_wait(1, retry_after=21.0, max_wait=20, rng=lambda: 1.0) is None


def test_retry_wait_backs_off_exponentially_up_to_the_caps():
    waits = [retry_wait(n, retry_after=None, max_wait=100, rng=lambda: 1.0) for n in (1, 2, 3)]
    assert waits == [0.5, 1.0, 2.0]
    assert retry_wait(20, retry_after=None, max_wait=100, rng=lambda: 1.0) == BACKOFF_CAP_SECONDS
    assert retry_wait(20, retry_after=None, max_wait=4, rng=lambda: 1.0) == 4


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_either_header(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_an_http_date_is_seconds_from_now():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds({"retry-after": when}) <= 30
