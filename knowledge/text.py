"""Text rules that ingestion, search and answering share: normalisation, CJK runs and bigrams,
words, and the language of a question."""

import re
import unicodedata

# Hiragana, katakana, CJK ideographs (extension A, unified, compatibility), Hangul syllables and
# halfwidth katakana: the scripts written without spaces between words.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f"
CJK_RUN = re.compile(f"[{CJK}]+")
KANA = re.compile(r"[\u3040-\u30ff\uff66-\uff9f]")
KATAKANA = re.compile(r"[\u30a0-\u30ff]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Words, and identifiers such as E-21, KG-300, v2.3.1 or LM5-2308-000001 kept together.
WORD = re.compile(r"[^\W_]+(?:[-_./:][^\W_]+)*")
# The letters-and-digits pieces of a word (an identifier has several).
WORD_PART = re.compile(r"[^\W_]+")


def normalize_text(text: str) -> str:
    """Newlines to "\\n", no NUL characters, no leading byte-order mark, Unicode NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.removeprefix("\ufeff")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


def cjk_bigrams(run: str) -> list[str]:
    """The overlapping character bigrams of a CJK run, as the keyword index holds them
    (knowledge migration 0001), in order; a one-character run is its own term."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def cjk_content_bigrams(text: str) -> set[str]:
    """Bigrams of the CJK runs that hold at least one Han or katakana character: particles and
    endings written in hiragana (です, ですか) say nothing about the topic."""
    return {
        pair
        for run in CJK_RUN.findall(unicodedata.normalize("NFKC", text))
        if len(run) > 1
        for pair in cjk_bigrams(run)
        if HAN.search(pair) or KATAKANA.search(pair)
    }


def detect_language(text: str) -> str:
    """Kana → ja; Han characters without kana → zh; anything else → en."""
    if KANA.search(text):
        return "ja"
    if HAN.search(text):
        return "zh"
    return "en"
