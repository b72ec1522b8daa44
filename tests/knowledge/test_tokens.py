import logging
import random
import threading

import pytest
import tiktoken

from knowledge import tokens
from knowledge.tokens import (
    EstimatedTokenCounter,
    TiktokenCounter,
    TokenCounter,
    get_token_counter,
)

# GPT-2's pre-tokenizer; the vocabulary is the 256 bytes plus a few English merges.
PAT_STR = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MERGES = [b"th", b"he", b"the", b" t", b" the", b"in", b"ing", b"er", b"an", b"on", b"re", b"es"]


def build_small_encoding(special_tokens: dict[str, int] | None = None) -> tiktoken.Encoding:
    """A real byte-level tiktoken encoding that needs no download (CJK costs 3 tokens a char)."""
    ranks = {bytes([i]): i for i in range(256)}
    for merge in MERGES:
        ranks[merge] = len(ranks)
    return tiktoken.Encoding(
        name="test_bytes",
        pat_str=PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=special_tokens or {},
    )


@pytest.fixture(autouse=True)
def fresh_counter_cache(monkeypatch):
    monkeypatch.setattr(tokens, "_counters", {})


@pytest.fixture
def offline_tiktoken(monkeypatch):
    """tiktoken as it behaves on a machine without network: every load fails."""
    attempts = []

    def get_encoding(name):
        attempts.append(name)
        raise OSError(f"Failed to resolve host for {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    return attempts


estimator = EstimatedTokenCounter()


def test_estimator_counts_english_words_by_length():
    assert estimator.count("The quick brown fox.") == 5
    assert estimator.count("configuration") == 3


def test_estimator_groups_digits_by_three():
    assert estimator.count("2024") == 2
    assert estimator.count("1234567") == 3
    assert estimator.count("3.14") == 3


def test_estimator_counts_about_one_token_per_cjk_character():
    # Kana and CJK punctuation count 1; Han ideographs 1.25, rounded up over the text.
    assert estimator.count("です。") == 3
    assert estimator.count("日本語です。") == 3 + 1 + 3
    assert estimator.count("請先關閉電源。") == 6 + 2 + 1


def test_estimator_counts_punctuation_and_other_scripts():
    assert estimator.count("Wait...") == 1 + 2
    assert estimator.count("привет") == 3


@pytest.mark.parametrize("text", ["a", ".", "_", "😀", "\u200b", "ー", "١", "é", "e\u0301", "€"])
def test_estimator_never_returns_zero_for_visible_text(text):
    assert estimator.count(text) >= 1
    assert estimator.count(f"  {text}\n") >= 1


def test_estimator_returns_zero_only_for_blank_text():
    assert estimator.count("") == 0
    assert estimator.count(" \n\t\u3000") == 0


def test_estimator_never_counts_a_joined_text_higher_than_its_parts():
    text = "Error E102: replace the toner (part 4471). プリンターの電源を入れてください。請先關閉電源！"
    rng = random.Random(3)
    for _ in range(300):
        cut = rng.randrange(len(text) + 1)
        head, tail = text[:cut], text[cut:]
        assert estimator.count(text) <= estimator.count(head) + estimator.count(tail)


def test_estimator_describes_itself_as_inexact():
    assert isinstance(estimator, TokenCounter)
    assert (estimator.name, estimator.is_exact) == ("estimator", False)
    assert estimator.encode_len_many(["the", "日本"]) == [1, 3]


def test_tiktoken_counter_counts_what_the_encoding_encodes():
    encoding = build_small_encoding()
    counter = TiktokenCounter(encoding)
    texts = ["the thing is in the shed", "日本語の文章です。", "", "  spaces  \n\n"]

    assert counter.encode_len_many(texts) == [len(encoding.encode(text)) for text in texts]
    assert counter.count("the") == 1
    assert (counter.name, counter.is_exact) == ("test_bytes", True)
    assert isinstance(counter, TokenCounter)


def test_tiktoken_counter_counts_special_token_text_as_ordinary_text():
    encoding = build_small_encoding(special_tokens={"<|endoftext|>": 400})
    counter = TiktokenCounter(encoding)

    assert counter.count("end <|endoftext|>") == len(encoding.encode_ordinary("end <|endoftext|>"))


def test_unavailable_encoding_falls_back_to_the_estimator_with_one_warning(
    offline_tiktoken, caplog
):
    with caplog.at_level(logging.WARNING, logger="knowledge.tokens"):
        first = get_token_counter("cl100k_base")
        second = get_token_counter("cl100k_base")

    assert isinstance(first, EstimatedTokenCounter)
    assert second is first
    assert offline_tiktoken == ["cl100k_base"]  # the failing download is tried once
    warnings = [r for r in caplog.records if r.name == "knowledge.tokens"]
    assert len(warnings) == 1
    assert "'cl100k_base' unavailable" in warnings[0].getMessage()
    assert "TIKTOKEN_CACHE_DIR" in warnings[0].getMessage()


def test_an_unknown_encoding_name_falls_back_to_the_estimator(caplog):
    with caplog.at_level(logging.WARNING, logger="knowledge.tokens"):
        counter = get_token_counter("no_such_encoding")

    assert isinstance(counter, EstimatedTokenCounter)
    assert "ValueError" in caplog.text


def test_the_encoding_name_comes_from_settings(settings, monkeypatch):
    encoding = build_small_encoding()
    monkeypatch.setattr(tiktoken, "get_encoding", {"test_bytes": encoding}.__getitem__)
    settings.KIOKU_TOKEN_ENCODING = "test_bytes"

    counter = get_token_counter()

    assert isinstance(counter, TiktokenCounter)
    assert counter.encoding is encoding


def test_a_download_that_hangs_is_abandoned(monkeypatch, caplog):
    release = threading.Event()

    def get_encoding(name):
        release.wait(10)
        raise OSError("gave up")

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    monkeypatch.setattr(tokens, "ENCODING_LOAD_TIMEOUT_SECONDS", 0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="knowledge.tokens"):
            counter = get_token_counter("cl100k_base")
    finally:
        release.set()

    assert isinstance(counter, EstimatedTokenCounter)
    assert "TimeoutError" in caplog.text
