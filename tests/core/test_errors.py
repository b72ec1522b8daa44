from core.errors import STATUS_CODES, ErrorCode


def error_codes() -> dict[str, str]:
    return {name: value for name, value in vars(ErrorCode).items() if not name.startswith("_")}


def test_every_code_is_an_upper_case_string_named_after_itself():
    for name, value in error_codes().items():
        assert isinstance(value, str) and value == value.upper() == name


def test_the_codes_are_distinct():
    codes = list(error_codes().values())
    assert len(codes) == len(set(codes))


def test_every_status_maps_to_a_defined_code():
    assert set(STATUS_CODES.values()) <= set(error_codes().values())
