"""Personal data masked in archived chunks: e-mail addresses, phone numbers and the patterns of
KIOKU_SESSION_PII_PATTERNS. The raw messages keep the original text and stay in the session
only; knowledge (searchable by everyone with read access) gets the masked text."""

import re
from functools import lru_cache

from django.conf import settings

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A run of digits with the separators people type (+81 90-1234-5678, (02) 2345 6789,
# 0912.345.678); counted as a phone number when it holds 9–15 digits, so dates, times, model
# numbers and prices stay readable.
PHONE_CANDIDATE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{6,}\d(?!\w)")
EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
CUSTOM_MASK = "[redacted]"


@lru_cache(maxsize=8)
def _custom_patterns(patterns: tuple[str, ...]) -> list[re.Pattern]:
    return [re.compile(pattern) for pattern in patterns]


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(character.isdigit() for character in text)
    if not 9 <= digits <= 15:
        return text
    # Keep the whitespace the pattern swallowed at the end.
    return PHONE_MASK + text[len(text.rstrip()) :]


def pii_mask(text: str) -> str:
    """The text with personal data replaced by [email], [phone] or [redacted]."""
    for pattern in _custom_patterns(tuple(settings.KIOKU_SESSION_PII_PATTERNS)):
        text = pattern.sub(CUSTOM_MASK, text)
    text = EMAIL.sub(EMAIL_MASK, text)
    return PHONE_CANDIDATE.sub(_phone, text)
