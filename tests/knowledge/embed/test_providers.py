"""Embedding providers: choice, OpenAI requests and errors (against the local stub server), input
fitting and batching, retries and isolation of rejected inputs, the local hashing provider."""

import email.utils
import time

import numpy as np
import pytest

from knowledge.embed.base import (
    EmbeddingLimits,
    InputRejectedError,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    RetryLaterError,
    TransientProviderError,
)
from knowledge.embed.batching import fit_input, plan_batches
from knowledge.embed.local_provider import LocalHashingEmbeddingProvider
from knowledge.embed.providers import get_embedding_provider
from knowledge.embed.retries import embed_with_retries
from knowledge.tokens import EstimatedTokenCounter
from support.openai_stub import OpenAIStub, stub_embedding


class StubTokenCounter:
    """Counts exactly as the stub server does (UTF-8 bytes / 4)."""

    name = "stub"
    is_exact = True

    def count(self, text: str) -> int:
        return OpenAIStub.count_tokens(text)

    def encode_len_many(self, texts):
        return [self.count(text) for text in texts]


class FakeProvider:
    """Rejects any request holding a text that starts with "bad", without naming it."""

    name = "fake"
    model = "fake-1"
    dimensions = 3
    is_offline = True
    limits = EmbeddingLimits()

    def embed(self, texts):
        if any(text.startswith("bad") for text in texts):
            raise InputRejectedError("HTTP 400: something in this request is invalid")
        return [[1.0, 0.0, 0.0] for _ in texts]


TEXTS = [f"Chunk {i}: the pump reports error E-{1000 + i} after a power cut." for i in range(8)]


@pytest.fixture
def provider(openai_stub):
    return get_embedding_provider()


@pytest.fixture
def waits():
    """Pass `sleep=waits.append`: records the waits instead of sleeping."""
    return []


# --- Choosing the provider ----------------------------------------------------------------------


def test_without_an_api_key_the_local_provider_is_used(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBEDDING_DIMENSIONS = 256

    provider = get_embedding_provider()

    assert (provider.name, provider.model, provider.is_offline) == ("local", "local-hash-v1", True)
    assert provider.dimensions == 256
    assert len(provider.embed(["hello"])[0]) == 256


def test_with_an_api_key_the_openai_provider_is_used(openai_stub, settings):
    provider = get_embedding_provider()

    assert (provider.name, provider.model, provider.is_offline) == (
        "openai",
        "text-embedding-3-small",
        False,
    )
    assert provider.limits == EmbeddingLimits(2048, 8192, 300_000)
    assert get_embedding_provider() is provider  # cached while the settings stay

    settings.OPENAI_API_KEY = ""
    assert get_embedding_provider().name == "local"  # settings are re-read on every call


def test_openai_vectors_are_float_lists_in_input_order(provider, openai_stub):
    vectors = provider.embed(TEXTS)

    assert vectors == [stub_embedding(text) for text in TEXTS]
    assert all(type(value) is float for value in vectors[0])


def test_float_arrays_are_read_like_base64(provider, openai_stub):
    # Servers that ignore encoding_format (some OpenAI-compatible ones) answer with floats.
    vectors = [stub_embedding(text) for text in TEXTS[:2]]
    openai_stub.answer_next(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": 1, "embedding": vectors[1]},
                {"object": "embedding", "index": 0, "embedding": vectors[0]},
            ],
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        }
    )

    arrays = provider.embed_float32(TEXTS[:2])

    assert openai_stub.requests[-1]["json"]["encoding_format"] == "base64"
    assert [array.dtype for array in arrays] == [np.float32, np.float32]
    assert [array.tolist() for array in arrays] == vectors  # put back in input order
    assert provider.last_usage_tokens() == 7


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        {"object": "list"},
        {"data": [{"index": 0, "embedding": "%%%"}]},
        {"data": [{"index": 0, "embedding": "AAA="}]},  # 2 bytes: not float32
        {"data": [{"index": 0, "embedding": {"x": 1}}]},
        {"data": [{"index": 0, "embedding": ["a", "b"]}]},
    ],
)
def test_a_malformed_answer_is_a_provider_error(provider, openai_stub, body):
    openai_stub.answer_next(body)

    with pytest.raises(ProviderError, match="Unexpected answer from the embedding server"):
        provider.embed(["hello"])


def test_dimensions_are_not_sent_when_they_are_the_models_own(provider, openai_stub):
    provider.embed(["hello"])

    assert "dimensions" not in openai_stub.requests[-1]["json"]


def test_dimensions_are_sent_when_they_differ_from_the_models_own(openai_stub, settings):
    settings.KIOKU_EMBEDDING_DIMENSIONS = 512

    vectors = get_embedding_provider().embed(["hello"])

    assert openai_stub.requests[-1]["json"]["dimensions"] == 512
    assert len(vectors[0]) == 512


def test_unknown_model_gets_no_dimensions_and_a_size_mismatch_is_a_config_error(
    openai_stub, settings
):
    settings.KIOKU_EMBEDDING_MODEL = "nomic-embed-text"  # e.g. Ollama: 768 dimensions
    settings.KIOKU_EMBEDDING_DIMENSIONS = 768

    with pytest.raises(ProviderConfigError, match="returned 1536-dimensional vectors"):
        embed_with_retries(get_embedding_provider(), ["hello"])

    assert "dimensions" not in openai_stub.requests[-1]["json"]


def test_ada_002_refuses_other_dimensions_without_a_request(openai_stub, settings):
    settings.KIOKU_EMBEDDING_MODEL = "text-embedding-ada-002"
    settings.KIOKU_EMBEDDING_DIMENSIONS = 512

    with pytest.raises(ProviderConfigError, match="always returns 1536"):
        get_embedding_provider().embed(["hello"])

    assert openai_stub.embedding_requests == 0


# --- Fitting inputs and planning batches --------------------------------------------------------


def test_fit_input_keeps_text_within_the_budget():
    text = "A short paragraph. " * 100

    assert fit_input(text, limits=EmbeddingLimits(), counter=EstimatedTokenCounter()) == text


def test_fit_input_keeps_the_beginning_of_an_over_long_text():
    counter = EstimatedTokenCounter()  # an estimate: 75 % of the limit is used
    text = "".join(f"Sentence {i} of a very long manual. " for i in range(5000))

    fitted = fit_input(text, limits=EmbeddingLimits(max_input_tokens=1000), counter=counter)

    assert text.startswith(fitted)
    assert 740 <= counter.count(fitted) <= 750


def test_over_long_input_is_rejected_unless_fitted(provider, openai_stub):
    long_text = "overheating " * 4000  # 48,000 bytes: 12,000 stub tokens

    raw = embed_with_retries(provider, [long_text, "short"])
    fitted_text = fit_input(long_text, limits=provider.limits, counter=StubTokenCounter())
    fitted = embed_with_retries(provider, [fitted_text, "short"])

    assert raw.vectors[0] is None and "maximum context length" in raw.errors[0]
    assert raw.vectors[1] is not None
    assert OpenAIStub.count_tokens(fitted_text) <= 8192 * 0.95
    assert fitted.errors == {} and all(vector is not None for vector in fitted.vectors)


def test_plan_batches_caps_inputs_per_request():
    batches = plan_batches([1] * 5000, limits=EmbeddingLimits())

    assert [len(batch) for batch in batches] == [2048, 2048, 904]
    assert [i for batch in batches for i in batch] == list(range(5000))


def test_plan_batches_caps_tokens_per_request_with_a_margin():
    batches = plan_batches([1000] * 700, limits=EmbeddingLimits())

    assert [len(batch) for batch in batches] == [240, 240, 220]  # 80 % of 300,000 tokens


def test_plan_batches_gives_an_oversized_input_its_own_request():
    limits = EmbeddingLimits(max_request_tokens=1000)

    assert plan_batches([300, 300, 5000, 300], limits=limits) == [[0, 1], [2], [3]]


def test_planned_batches_are_accepted_by_the_server(provider, openai_stub):
    counter = StubTokenCounter()
    texts = [f"{i} " + "word " * 5600 for i in range(50)]  # ~7,000 stub tokens each
    texts = [fit_input(text, limits=provider.limits, counter=counter) for text in texts]

    batches = plan_batches([counter.count(text) for text in texts], limits=provider.limits)
    outcomes = [embed_with_retries(provider, [texts[i] for i in batch]) for batch in batches]

    assert len(batches) == 2
    assert all(outcome.errors == {} for outcome in outcomes)
    assert [request["status"] for request in openai_stub.requests] == [200, 200]


# --- Retries ------------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_the_servers_retry_after(provider, openai_stub, waits):
    openai_stub.fail_next(429, retry_after=2)

    outcome = embed_with_retries(provider, TEXTS, sleep=waits.append)

    assert waits == [2.0]
    assert (outcome.requests, outcome.retries) == (2, 1)
    assert all(vector is not None for vector in outcome.vectors)


def test_retry_after_as_an_http_date_is_honoured(provider, openai_stub, waits):
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    openai_stub.fail_next(429, headers={"Retry-After": when})

    embed_with_retries(provider, TEXTS, sleep=waits.append)

    assert len(waits) == 1 and 8 <= waits[0] <= 10


def test_server_error_is_retried_with_backoff(provider, openai_stub, waits):
    openai_stub.fail_next(500)

    outcome = embed_with_retries(provider, TEXTS, sleep=waits.append, rng=lambda: 1.0)

    assert waits == [0.5]
    assert outcome.retries == 1 and all(vector is not None for vector in outcome.vectors)


def test_backoff_doubles_and_gives_up_after_max_attempts(provider, openai_stub, waits):
    openai_stub.fail_next(503, count=5)

    with pytest.raises(TransientProviderError, match="HTTP 503"):
        embed_with_retries(provider, TEXTS, sleep=waits.append, rng=lambda: 1.0)

    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert openai_stub.embedding_requests == 5


def test_timeout_is_retried(openai_stub, settings, waits):
    settings.KIOKU_EMBEDDING_TIMEOUT_SECONDS = 0.3
    openai_stub.hang_next(1.5)

    outcome = embed_with_retries(get_embedding_provider(), TEXTS, sleep=waits.append)

    assert (outcome.requests, outcome.retries) == (2, 1)
    assert all(vector is not None for vector in outcome.vectors)


def test_retry_after_longer_than_max_wait_hands_the_batch_back(provider, openai_stub, waits):
    openai_stub.fail_next(429, retry_after=60)

    with pytest.raises(RetryLaterError) as raised:
        embed_with_retries(provider, TEXTS, max_wait=20, sleep=waits.append)

    assert raised.value.retry_after == 60
    assert waits == []


def test_insufficient_quota_is_raised_without_retrying(provider, openai_stub, waits):
    openai_stub.fail_next(429, code="insufficient_quota")

    with pytest.raises(QuotaExceededError, match="exceeded your current quota"):
        embed_with_retries(provider, TEXTS, sleep=waits.append)

    assert openai_stub.embedding_requests == 1 and waits == []


@pytest.mark.parametrize("status", [401, 403, 404])
def test_bad_key_or_model_is_a_config_error(provider, openai_stub, waits, status):
    openai_stub.fail_next(status)

    with pytest.raises(ProviderConfigError, match=f"HTTP {status}"):
        embed_with_retries(provider, TEXTS, sleep=waits.append)

    assert openai_stub.embedding_requests == 1


def test_a_rejected_parameter_is_a_config_error_not_a_bad_input(provider, openai_stub):
    error = {"message": "Invalid value for 'dimensions'.", "type": "invalid_request_error"}
    openai_stub.fail_next(400, body={"error": error | {"param": "dimensions", "code": None}})

    with pytest.raises(ProviderConfigError, match="dimensions"):
        embed_with_retries(provider, TEXTS)

    assert openai_stub.embedding_requests == 1


# --- Rejected inputs ----------------------------------------------------------------------------


def test_a_rejected_input_does_not_block_its_neighbours(provider, openai_stub):
    openai_stub.poison = {TEXTS[5]}

    outcome = embed_with_retries(provider, TEXTS)

    assert list(outcome.errors) == [5]
    assert "told to reject" in outcome.errors[5]
    assert [vector is None for vector in outcome.vectors] == [i == 5 for i in range(8)]
    assert outcome.vectors[6].tolist() == stub_embedding(TEXTS[6])
    assert outcome.requests == 2


def test_every_rejected_input_is_isolated(provider, openai_stub):
    openai_stub.poison = {TEXTS[1], TEXTS[6]}

    outcome = embed_with_retries(provider, TEXTS)

    assert sorted(outcome.errors) == [1, 6]
    assert sum(vector is not None for vector in outcome.vectors) == 6
    assert outcome.requests == 3


def test_a_rejection_naming_no_input_is_bisected(provider, openai_stub):
    error = {"message": "Invalid request.", "type": "invalid_request_error", "param": None}
    openai_stub.fail_next(400, body={"error": error})

    outcome = embed_with_retries(provider, TEXTS)

    assert outcome.errors == {}
    assert all(vector is not None for vector in outcome.vectors)
    assert [len(inputs) for inputs in openai_stub.embedding_inputs] == [8, 4, 4]


def test_bisection_isolates_bad_inputs_the_server_does_not_name():
    texts = ["good 0", "good 1", "bad 2", "good 3", "good 4", "bad 5", "good 6", "good 7"]

    outcome = embed_with_retries(FakeProvider(), texts)

    assert sorted(outcome.errors) == [2, 5]
    assert [vector is None for vector in outcome.vectors] == [t.startswith("bad") for t in texts]
    assert outcome.requests == 11


def test_a_lone_rejected_input_is_recorded(provider, openai_stub):
    openai_stub.poison = {"poison"}

    outcome = embed_with_retries(provider, ["poison"])

    assert outcome.vectors == [None] and list(outcome.errors) == [0]
    assert outcome.requests == 1


# --- The local provider -------------------------------------------------------------------------

local = LocalHashingEmbeddingProvider(dimensions=1536)


def cosine(a: str, b: str) -> float:
    first, second = local.embed_arrays([a, b])
    return float(first @ second)


def test_local_vectors_are_deterministic_and_pinned():
    vector = np.array(local.embed(["Reset E-12"])[0])

    slots = np.flatnonzero(vector)
    # Integer hashing only: these slots and signs are the same on every machine. If this test
    # fails, local-hash-v1 vectors changed: give the provider a new model name.
    assert dict(zip(slots.tolist(), np.sign(vector[slots]).astype(int).tolist(), strict=True)) == {
        5: -1, 245: -1, 342: 1, 439: -1, 752: -1, 763: -1, 788: -1, 949: 1,
        960: -1, 968: -1, 1046: 1, 1178: 1, 1471: -1,
    }  # fmt: skip
    assert LocalHashingEmbeddingProvider(dimensions=1536).embed(["Reset E-12"])[0] == list(vector)


def test_local_vectors_are_unit_length_even_for_empty_text():
    vectors = np.array(local.embed(["", "!!!", "a", "電池", "word " * 2000]))

    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0][0] == 1.0 and vectors[1][0] == 1.0


def test_local_vectors_do_not_depend_on_the_batch():
    texts = [f"Manual page {i}: replace the filter, then reset E-{i}. 第{i}章" for i in range(150)]

    together = local.embed(texts)

    assert together == [local.embed([text])[0] for text in texts]


def test_local_related_texts_are_closer_than_unrelated():
    query = "How do I reset the router password?"

    assert cosine(query, "Resetting your router's admin password") > 0.2
    assert cosine(query, "Quarterly revenue grew in Europe") < 0.05


def test_local_matches_cjk_substrings():
    assert cosine("電池交換", "電池交換の手順を説明します。") > cosine(
        "電池交換", "ネットワーク設定の確認"
    )
    assert cosine("電池交換", "電池交換の手順を説明します。") > 0.3


def test_local_matches_error_codes():
    query = "error E-1234"

    assert cosine(query, "The unit shows E-1234 when the fan is blocked.") > cosine(
        query, "The unit shows E-5678 when the door is open."
    )


def test_local_survives_typos():
    assert cosine("recieve firmware update", "receiving firmware updates") > 0.3


def test_local_folds_fullwidth_and_compatibility_forms():
    assert local.embed(["ＥＲＲ－０４"]) == local.embed(["err-04"])
    assert local.embed(["ｶﾞｲﾄﾞ"]) == local.embed(["ガイド"])
    assert local.embed(["5㎏"]) == local.embed(["5kg"])


def test_local_does_not_match_across_languages():
    assert abs(cosine("battery", "電池")) < 0.1


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_waits_instead_of_exceeding_tokens_per_minute():
    from knowledge.embed.pacing import RequestPacer

    clock = FakeClock()
    pacer = RequestPacer(tpm=1000, headroom=1.0, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        pacer.acquire(250)
    assert clock.now == 0.0  # the first 1,000 tokens go at once
    pacer.acquire(250)
    assert 60.0 <= clock.now <= 61.1  # then it waits for the window to slide


def test_pacer_limits_requests_per_minute():
    from knowledge.embed.pacing import RequestPacer

    clock = FakeClock()
    pacer = RequestPacer(rpm=2, clock=clock, sleep=clock.sleep)
    pacer.acquire(1)
    pacer.acquire(1)
    pacer.acquire(1)
    assert 60.0 <= clock.now <= 61.1


def test_pacer_learns_the_servers_token_count():
    from knowledge.embed.pacing import RequestPacer

    clock = FakeClock()
    pacer = RequestPacer(tpm=1000, headroom=1.0, clock=clock, sleep=clock.sleep)
    event = pacer.acquire(100)
    pacer.settle(event, estimated_tokens=100, actual_tokens=200)  # we under-estimate by half
    assert event[1] == 200 and pacer.ratio > 1.0
    assert pacer.acquire(100)[1] > 100


def test_paced_requests_never_hit_the_stubs_tpm_limit(openai_stub, settings):
    settings.KIOKU_EMBEDDING_TPM = 3000
    openai_stub.tpm = 3000
    openai_stub.rate_window = 2.0  # a 2-second "minute" keeps the test fast
    from knowledge.embed import pacing

    pacing._pacers.clear()
    pacer = pacing.get_request_pacer()
    pacer.window = 2.0
    provider = get_embedding_provider()
    texts = ["battery " * 200] * 3  # ~400 stub tokens each
    for _ in range(6):
        embed_with_retries(provider, texts, sleep=lambda s: None)
    assert openai_stub.limit_violations == 0
    pacing._pacers.clear()


def test_local_provider_handles_a_batch_of_punctuation_only_texts():
    from knowledge.embed.local_provider import LocalHashingEmbeddingProvider

    vectors = LocalHashingEmbeddingProvider(dimensions=64).embed(["\\' & ! <-> :*", "!!!"])
    assert all(abs(sum(x * x for x in vector) - 1.0) < 1e-9 for vector in vectors)
