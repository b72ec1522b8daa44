import pytest

from dispatch.models import normalize_error_code, normalize_key


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("E21", "E-21"),
        ("e-21", "E-21"),
        ("E 21", "E-21"),
        (" e_21 ", "E-21"),
        ("err.7", "ERR-7"),
        ("low bat", "LOW-BAT"),
        ("", ""),
    ],
)
def test_error_codes_are_normalised(raw, code):
    assert normalize_error_code(raw) == code


@pytest.mark.parametrize("raw", ["KG-200", "kg 200", "ＫＧ２００", " Kg_200 "])
def test_brand_and_model_keys_ignore_case_width_and_punctuation(raw):
    assert normalize_key(raw) == "kg200"
