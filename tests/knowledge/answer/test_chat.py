"""The chat provider's retries, against the local OpenAI-compatible stub."""

import pytest

from knowledge.answer.chat import ChatError, get_chat_provider

MESSAGES = [{"role": "user", "content": "How do I replace the batteries?"}]


def test_a_rate_limit_is_retried_after_the_servers_wait(openai_stub):
    waits: list[float] = []
    openai_stub.fail_next(429, retry_after=0.5)
    reply = get_chat_provider().complete(MESSAGES, sleep=waits.append)
    assert reply.content
    assert waits == [0.5]
    assert openai_stub.chat_requests == 2


def test_a_wait_longer_than_a_person_should_sit_through_fails_at_once(openai_stub, settings):
    settings.KIOKU_CHAT_MAX_RETRY_WAIT_SECONDS = 20
    waits: list[float] = []
    openai_stub.fail_next(429, retry_after=60)
    with pytest.raises(ChatError) as excinfo:
        get_chat_provider().complete(MESSAGES, sleep=waits.append)
    assert excinfo.value.is_transient and excinfo.value.retry_after == 60
    assert waits == []
    assert openai_stub.chat_requests == 1


def test_a_quota_error_is_not_retried(openai_stub):
    openai_stub.fail_next(429, code="insufficient_quota")
    with pytest.raises(ChatError) as excinfo:
        get_chat_provider().complete(MESSAGES, sleep=lambda seconds: None)
    assert not excinfo.value.is_transient
    assert openai_stub.chat_requests == 1
