from sessions_app import errors


def error_codes() -> dict[str, str]:
    return {name: value for name, value in vars(errors).items() if name.startswith("SESSION_")}


def test_every_code_is_an_upper_case_string_named_after_itself():
    for name, value in error_codes().items():
        assert isinstance(value, str) and value == value.upper() == name


def test_the_codes_are_distinct():
    codes = list(error_codes().values())
    assert len(codes) == len(set(codes)) >= 8


def test_session_errors_are_api_errors():
    from core.errors import ApiError

    assert issubclass(errors.SessionError, ApiError)
