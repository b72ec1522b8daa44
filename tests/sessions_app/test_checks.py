"""Settings checks of the sessions app."""

from sessions_app.checks import pii_patterns_compile


def test_valid_pii_patterns_pass(settings):
    settings.KIOKU_SESSION_PII_PATTERNS = [r"\bCUST-\d{6}\b", r"(?i)member no\.? \d+"]
    assert pii_patterns_compile() == []


def test_an_invalid_pattern_is_reported_with_its_line(settings):
    settings.KIOKU_SESSION_PII_PATTERNS = [r"\bCUST-\d{6}\b", r"(unclosed"]
    errors = pii_patterns_compile()
    assert [error.id for error in errors] == ["kioku.E003"]
    assert "line 2" in errors[0].msg and "(unclosed" in errors[0].msg
