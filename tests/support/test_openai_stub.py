"""The local OpenAI stub, exercised through the real ``openai`` client (no database needed)."""

import json
import math
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from openai import OpenAI

from support.openai_stub import OpenAIStub, count_tokens, stub_embedding

EMBED_MODEL = "text-embedding-3-small"
CHAT_MODEL = "gpt-4o-mini"


@pytest.fixture
def stub():
    server = OpenAIStub().start()
    yield server
    server.stop()


def client_for(stub, **kwargs):
    kwargs.setdefault("max_retries", 0)
    return OpenAI(api_key=stub.api_key, base_url=stub.base_url, **kwargs)


@pytest.fixture
def client(stub):
    with client_for(stub) as c:
        yield c


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


def raw_request(stub, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(stub.root_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


AUTH = {"Authorization": "Bearer test-key"}


# -- embeddings ----------------------------------------------------------------------------------


def test_embeddings_shape_determinism_and_base64_default(stub, client):
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    first = client.embeddings.create(model=EMBED_MODEL, input=texts)
    second = client.embeddings.create(model=EMBED_MODEL, input=texts[0])

    assert first.object == "list" and first.model == EMBED_MODEL
    assert [d.index for d in first.data] == [0, 1]
    assert all(d.object == "embedding" and len(d.embedding) == 1536 for d in first.data)
    assert first.data[0].embedding == second.data[0].embedding
    assert first.data[0].embedding != first.data[1].embedding
    for d in first.data:
        assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, abs_tol=1e-5)
    expected_tokens = sum(count_tokens(t) for t in texts)
    assert first.usage.prompt_tokens == first.usage.total_tokens == expected_tokens

    # The client asks for base64 unless told otherwise; explicit float gives the same numbers.
    assert stub.requests[0]["json"]["encoding_format"] == "base64"
    as_float = client.embeddings.create(model=EMBED_MODEL, input=texts[0], encoding_format="float")
    assert stub.requests[-1]["json"]["encoding_format"] == "float"
    assert as_float.data[0].embedding == first.data[0].embedding == stub_embedding(texts[0])

    assert stub.embedding_requests == 3
    assert stub.embedded_inputs == 4
    assert stub.embedding_inputs[1] == texts[0]


def test_dimensions_honoured_and_normalised(client):
    result = client.embeddings.create(model=EMBED_MODEL, input=["alpha beta"], dimensions=256)
    vector = result.data[0].embedding
    assert len(vector) == 256
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-5)
    assert vector == stub_embedding("alpha beta", 256)
    assert vector != stub_embedding("alpha beta", 512)[:256]

    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=0)
    assert excinfo.value.param == "dimensions"


def test_related_texts_are_more_similar_than_unrelated(client):
    texts = [
        "How do I reset the boiler pressure valve?",
        "Boiler pressure valve reset procedure",
        "Quarterly invoice totals for the marketing department",
    ]
    vectors = [d.embedding for d in client.embeddings.create(model=EMBED_MODEL, input=texts).data]
    related = cosine(vectors[0], vectors[1])
    unrelated = cosine(vectors[0], vectors[2])
    assert related > 0.4
    assert related > unrelated + 0.3


def test_token_array_inputs(client):
    single = client.embeddings.create(model=EMBED_MODEL, input=[1, 2, 3])
    assert len(single.data) == 1 and single.usage.prompt_tokens == 3
    many = client.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3], [4, 5]])
    assert len(many.data) == 2 and many.usage.prompt_tokens == 5
    assert many.data[0].embedding == single.data[0].embedding


def test_stats_count_token_array_inputs(stub, client):
    # LangChain's OpenAIEmbeddings sends token ids (bench/peers.py reads the stats after it).
    client.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3], [4, 5]])
    client.embeddings.create(model=EMBED_MODEL, input=["abcdefghijklmnopqrstuvwxyz01234"])
    status, _, stats = raw_request(stub, "GET", "/_stub/stats")
    assert status == 200
    assert stats["embedding_requests"] == 2
    assert [tokens for _, tokens in stats["accepted"]] == [5, 8]


def test_input_count_limit(stub, client):
    client.embeddings.create(model=EMBED_MODEL, input=["x"] * 2048, dimensions=8)
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input=["x"] * 2049, dimensions=8)
    assert excinfo.value.type == "invalid_request_error"
    assert excinfo.value.param == "input"
    assert stub.requests[-1]["status"] == 400

    stub.max_inputs = 3
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBED_MODEL, input=["a", "b", "c", "d"])
    assert stub.embedded_inputs == 2048


def test_per_input_and_per_request_token_limits(stub, client):
    at_limit = "abcd" * 8192
    assert OpenAIStub.count_tokens(at_limit) == 8192
    client.embeddings.create(model=EMBED_MODEL, input=[at_limit])

    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input=["ok", at_limit + "a"])
    assert excinfo.value.param == "input[1]"
    assert excinfo.value.code == "context_length_exceeded"

    # 37 inputs of 8192 tokens = 303,104 tokens > 300,000.
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input=[at_limit] * 37)
    assert excinfo.value.code == "max_tokens_per_request"

    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBED_MODEL, input=["fine", ""])


def test_poisoned_text_is_rejected_with_its_index(stub, client):
    stub.poison = {"bad apple"}
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input=["a", "b", "c", "bad apple"])
    assert excinfo.value.type == "invalid_request_error"
    assert excinfo.value.param == "input[3]"
    assert "3" in excinfo.value.message
    client.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
    assert stub.embedded_inputs == 2


# -- injected failures ---------------------------------------------------------------------------


def test_fail_next_429_raises_rate_limit_error(stub, client):
    stub.fail_next(429, retry_after=0.4)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input="x")
    headers = excinfo.value.response.headers
    assert headers["retry-after"] == "0.4"
    assert headers["retry-after-ms"] == "400"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert stub.pending_failures == 0
    assert stub.limit_violations == 0  # injected, not produced by rpm/tpm


def test_client_retries_after_429_and_succeeds(stub):
    stub.fail_next(429, retry_after=0.05)
    with client_for(stub, max_retries=2) as retrying:
        result = retrying.embeddings.create(model=EMBED_MODEL, input="hello")
    assert len(result.data) == 1
    assert [r["status"] for r in stub.requests] == [429, 200]
    assert stub.requests[1]["headers"]["x-stainless-retry-count"] == "1"
    assert stub.embedding_requests == 2 and stub.embedded_inputs == 1


def test_500_then_success(stub, client):
    stub.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model=EMBED_MODEL, input="x")

    stub.fail_next(500, retry_after=0.01)
    with client_for(stub, max_retries=1) as retrying:
        retrying.embeddings.create(model=EMBED_MODEL, input="x")
    assert [r["status"] for r in stub.requests] == [500, 500, 200]


def test_insufficient_quota_and_custom_bodies(stub, client):
    stub.fail_next(429, code="insufficient_quota")
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert excinfo.value.code == "insufficient_quota"

    stub.fail_next(503, body={"error": {"message": "custom outage", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input="x")
    assert excinfo.value.status_code == 503
    assert "custom outage" in excinfo.value.message

    stub.fail_next(500, count=2)
    assert stub.pending_failures == 2


def test_latency_and_hang_timeout(stub):
    stub.latency = 0.1
    with client_for(stub) as c:
        started = time.monotonic()
        c.embeddings.create(model=EMBED_MODEL, input="x")
        assert time.monotonic() - started >= 0.1

    stub.latency = 0.0
    stub.hang_next(3)
    with client_for(stub, timeout=0.2) as c:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            c.embeddings.create(model=EMBED_MODEL, input="x")
        assert time.monotonic() - started < 2
        # Only the next request hangs.
        c.embeddings.create(model=EMBED_MODEL, input="x")


def test_cancelled_hangs_are_not_taken(stub, client):
    stub.hang_next(30, count=2)
    assert stub.pending_hangs == 2
    stub.hangs_cancel()
    assert stub.pending_hangs == 0
    started = time.monotonic()
    client.embeddings.create(model=EMBED_MODEL, input="x")
    assert time.monotonic() - started < 10


# -- rate limits ---------------------------------------------------------------------------------


def test_tpm_limit_answers_429_with_retry_after(stub, client):
    stub.tpm = 10
    text = "abcdefghijklmnopqrstuvwxyz01234"  # 31 bytes -> 8 tokens
    assert count_tokens(text) == 8
    client.embeddings.create(model=EMBED_MODEL, input=text)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input=text)
    retry_after = float(excinfo.value.response.headers["retry-after"])
    assert 0 < retry_after <= 60
    assert int(excinfo.value.response.headers["retry-after-ms"]) >= 1
    assert excinfo.value.code == "rate_limit_exceeded"
    assert excinfo.value.response.headers["x-ratelimit-limit-tokens"] == "10"
    assert stub.limit_violations == 1
    assert stub.embedded_inputs == 1


def test_rpm_sliding_window(stub, client):
    stub.rpm = 2
    stub.rate_window = 0.3
    client.embeddings.create(model=EMBED_MODEL, input="a")
    client.embeddings.create(model=EMBED_MODEL, input="b")
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.embeddings.create(model=EMBED_MODEL, input="c")
    assert 0 < float(excinfo.value.response.headers["retry-after"]) <= 0.3
    assert stub.limit_violations == 1
    time.sleep(0.35)
    client.embeddings.create(model=EMBED_MODEL, input="c")

    # A retrying client waits out the window by itself.
    with client_for(stub, max_retries=3) as retrying:
        for text in ("d", "e", "f"):
            retrying.embeddings.create(model=EMBED_MODEL, input=text)
    assert stub.limit_violations >= 2
    assert stub.embedded_inputs == 6


# -- chat ----------------------------------------------------------------------------------------


def test_chat_completion_default_reply(stub, client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Where is the boiler manual?"},
    ]
    result = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert result.object == "chat.completion"
    assert result.model == CHAT_MODEL
    assert result.id.startswith("chatcmpl-")
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Stub answer to: Where is the boiler manual?"
    assert choice.finish_reason == "stop"
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert stub.chat_requests == 1
    assert stub.chat_messages == [messages]


def test_chat_reply_overrides(stub, client):
    messages = [{"role": "user", "content": "x" * 500}]
    default = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert default.choices[0].message.content == "Stub answer to: " + "x" * 200

    stub.chat_reply = "fixed text"
    result = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert result.choices[0].message.content == "fixed text"

    stub.chat_reply = lambda body: f"{len(body['messages'])} messages"
    result = client.chat.completions.create(model=CHAT_MODEL, messages=messages * 2)
    assert result.choices[0].message.content == "2 messages"

    stub.chat_reply = "word " * 50
    result = client.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=5)
    assert result.choices[0].finish_reason == "length"
    assert len(result.choices[0].message.content) <= 20


def test_chat_streaming(stub, client):
    stub.chat_reply = "The manual is in the blue binder on shelf three."
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "manual?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) > 3
    assert "".join(deltas) == stub.chat_reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert stub.requests[-1]["status"] == 200

    # Without include_usage there is no usage chunk.
    stub.chat_reply = None
    plain = list(
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain) == "Stub answer to: hi"


def test_empty_reply(stub, client):
    stub.chat_reply = ""
    messages = [{"role": "user", "content": "anything"}]
    result = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert result.choices[0].message.content == ""
    assert result.usage.completion_tokens == 0
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""


# -- protocol ------------------------------------------------------------------------------------


def test_auth_unknown_paths_models_and_bad_json(stub, client):
    status, _, body = raw_request(stub, "POST", "/v1/embeddings", {"model": "m", "input": "x"})
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    status, _, body = raw_request(
        stub, "POST", "/v1/embeddings", {"model": "m", "input": "x"}, {"Authorization": "Basic x"}
    )
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, _, body = raw_request(stub, "POST", "/v1/nope", {}, AUTH)
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}

    with pytest.raises(openai.NotFoundError):
        client.post("/nope", cast_to=object, body={})
    assert [m.id for m in client.models.list()][0] == "text-embedding-3-small"
    assert client.models.retrieve(CHAT_MODEL).id == CHAT_MODEL

    request = urllib.request.Request(
        stub.root_url + "/v1/embeddings", data=b"{not json", method="POST", headers=AUTH
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    assert excinfo.value.code == 400

    with OpenAI(api_key="any-other-key", base_url=stub.base_url, max_retries=0) as other:
        other.embeddings.create(model=EMBED_MODEL, input="x")
    assert stub.requests[-1]["headers"]["authorization"] == "Bearer any-other-key"


def test_concurrent_requests_and_reset(stub, client):
    errors = []

    def work(n):
        try:
            client.embeddings.create(model=EMBED_MODEL, input=[f"text {n}", "shared"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert stub.embedding_requests == 16 and stub.embedded_inputs == 32
    assert len(stub.requests) == 16

    stub.fail_next(500, count=3)
    stub.tpm = 1
    stub.poison = {"x"}
    stub.latency = 5
    stub.reset()
    assert stub.requests == [] and stub.embedding_requests == 0 and stub.pending_failures == 0
    assert stub.tpm is None and stub.poison == set() and stub.latency == 0
    client.embeddings.create(model=EMBED_MODEL, input="x")


def test_context_manager_and_restart():
    with OpenAIStub() as stub:
        assert stub.running
        assert stub.base_url.startswith("http://127.0.0.1:") and stub.base_url.endswith("/v1")
        with client_for(stub) as c:
            c.embeddings.create(model=EMBED_MODEL, input="x")
    assert not stub.running
    with pytest.raises(RuntimeError):
        _ = stub.base_url
    stub.start()
    try:
        with client_for(stub) as c:
            c.embeddings.create(model=EMBED_MODEL, input="x")
        assert stub.embedding_requests == 2
    finally:
        stub.stop()
