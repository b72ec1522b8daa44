"""The text rules ingestion, search and answering share."""

import pytest

from knowledge.text import (
    CJK_RUN,
    WORD,
    cjk_bigrams,
    cjk_content_bigrams,
    detect_language,
    normalize_text,
)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("電池が切れた", "ja"),
        ("カギ", "ja"),
        ("電池沒電", "zh"),
        ("battery", "en"),
        ("E-21?", "en"),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_normalize_text_unifies_newlines_drops_nul_and_bom_and_composes():
    assert normalize_text("\ufeffa\r\nb\rc\x00d") == "a\nb\ncd"
    assert normalize_text("\u30ab\u3099") == "\u30ac"  # カ + combining dakuten → ガ


def test_a_cjk_run_becomes_its_overlapping_bigrams():
    assert cjk_bigrams("電池交換") == ["電池", "池交", "交換"]
    assert cjk_bigrams("鍵") == ["鍵"]


def test_content_bigrams_leave_out_hiragana_only_pairs():
    # です and すか say nothing about the topic; 電池 does.
    assert cjk_content_bigrams("電池ですか") == {"電池", "池で"}


def test_words_keep_identifiers_together_and_cjk_runs_apart():
    text = "Error E-21 on KG-300 v2.3.1: 電池切れ"
    assert WORD.findall(CJK_RUN.sub(" ", text)) == ["Error", "E-21", "on", "KG-300", "v2.3.1"]
    assert CJK_RUN.findall(text) == ["電池切れ"]
