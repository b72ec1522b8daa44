"""Every wording the LINE bot uses exists in each language it speaks, and every button label fits
LINE's quick-reply limit."""

import pytest

from dispatch.models import Symptom
from line_channel.messaging import QUICK_REPLY_LABEL_LIMIT
from line_channel.texts import LANGUAGES, START_WORDS, SYMPTOM_LABELS, TEXTS, say, words


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_text_is_written_in_every_language(key):
    assert set(TEXTS[key]) == set(LANGUAGES)
    assert all(text.strip() for text in TEXTS[key].values())


def test_every_symptom_has_a_label_in_every_language_that_fits_a_button():
    assert set(SYMPTOM_LABELS) == set(Symptom.values)
    for labels in SYMPTOM_LABELS.values():
        assert set(labels) == set(LANGUAGES)
        assert all(len(label) <= QUICK_REPLY_LABEL_LIMIT for label in labels.values())


def test_button_labels_fit_and_the_report_button_sends_a_start_word():
    for key, variants in TEXTS.items():
        if key.startswith("button_"):
            assert all(len(label) <= QUICK_REPLY_LABEL_LIMIT for label in variants.values()), key
    for language in LANGUAGES:
        assert START_WORDS[say("report_word", language)] == language
    assert set(START_WORDS.values()) == set(LANGUAGES)


def test_a_language_the_bot_does_not_speak_gets_english_and_buttons_match_any_language():
    assert say("cancelled", "ko") == TEXTS["cancelled"]["en"]
    assert {"skip", "跳過", "スキップ"} <= words("button_skip")
