"""The one rule for text a client sends the API, applied at the edge before any endpoint runs.

PostgreSQL's text and jsonb cannot hold NUL (U+0000), and a lone surrogate (U+D800–U+DFFF, which
JSON's `\\ud800` escapes can produce) cannot be encoded as UTF-8 at all. Rather than strip them
silently, the API refuses them: 422 TEXT_INVALID_CHARACTER, with the field's location in
`details`, for every string and every object key at any depth of a JSON body, every query and
form field, every file name and every path parameter. Nothing is written.

Pages and the admin follow the same rule through PageTextMiddleware: a query or form field, or a
path, holding NUL or a lone surrogate gets a 400 page naming the field before any view runs.

A body or query string that is not UTF-8 is refused with TEXT_INVALID_ENCODING (400); JSON nested deeper than
JSON_MAX_DEPTH with JSON_TOO_DEEP (422); `NaN`/`Infinity`, which are not JSON, with INVALID_JSON.
"""

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.datastructures import MultiValueDict
from ninja.parser import Parser

from core.errors import ApiError, ErrorCode
from core.middleware import API_PREFIX

# Objects and arrays inside each other; metadata a person writes is a few levels deep.
JSON_MAX_DEPTH = 32
INVALID_CHARACTER = re.compile("[\x00\ud800-\udfff]")

Location = list[str | int]


def text_check(value: str, *, location: Location) -> None:
    """Refuse `value` when it holds NUL or a lone surrogate (the rule above)."""
    found = INVALID_CHARACTER.search(value)
    if found is None:
        return
    raise ApiError(
        ErrorCode.TEXT_INVALID_CHARACTER,
        f"{_label(location)} contains U+{ord(found.group()):04X}, which Kioku does not store "
        "(NUL and lone surrogates are refused in every text field).",
        status=422,
        details={
            "location": [_printable(part) for part in location],
            "character": f"U+{ord(found.group()):04X}",
        },
    )


def json_check(value: Any, *, location: Location) -> None:
    """Apply `text_check` to every string and key in a parsed JSON value, and refuse nesting
    deeper than JSON_MAX_DEPTH. Iterative, so depth alone cannot exhaust the stack."""
    pending: list[tuple[Any, Location, int]] = [(value, location, 0)]
    while pending:
        item, where, depth = pending.pop()
        if isinstance(item, str):
            text_check(item, location=where)
        elif isinstance(item, dict | list):
            if depth >= JSON_MAX_DEPTH:
                raise _too_deep()
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    text_check(key, location=[*where, key])
                pending.append((child, [*where, key], depth + 1))


class EdgeParser(Parser):
    """ninja's parser with the rule above: JSON bodies, query strings, forms and file names."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(
                ErrorCode.TEXT_INVALID_ENCODING,
                f"The request body is not valid UTF-8 (byte {exc.start}).",
                status=400,
                details={"position": exc.start},
            ) from None
        try:
            parsed = json.loads(text, parse_constant=_not_json)
        except RecursionError:
            raise _too_deep() from None
        if not isinstance(parsed, dict):
            # Every body of this API is an object; ninja would take `[]` for one with no fields.
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                "The request body must be a JSON object.",
                status=422,
                details={"location": ["body"]},
            )
        json_check(parsed, location=["body"])
        return parsed

    def parse_querydict(
        self, data: MultiValueDict, list_fields: list[str], request: HttpRequest
    ) -> dict[str, Any]:
        where = "query" if data is request.GET else "form"
        if where == "query":
            _query_string_check(request.META.get("QUERY_STRING", ""))
        _fields_check(data, where=where)
        return super().parse_querydict(data, list_fields, request)


def path_params_checked(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """An operation decorator (runs after authentication): the rule for path parameters, which
    ninja hands to the endpoint without a parser."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        match = request.resolver_match
        for name, value in (match.kwargs if match else {}).items():
            if isinstance(value, str):
                text_check(value, location=["path", name])
        return view(request, *args, **kwargs)

    return checked


def _fields_check(data: MultiValueDict, *, where: str) -> None:
    """The rule for every key and value of a query, a form, or its files (their names)."""
    for key, values in data.lists():
        text_check(key, location=[where, key])
        for value in values:
            if isinstance(value, UploadedFile):
                text_check(value.name or "", location=["file", key, "name"])
            elif isinstance(value, str):
                text_check(value, location=[where, key])


def _query_string_check(query_string: str) -> None:
    """Django reads a query string that is not UTF-8 with U+FFFD in place of the bad bytes;
    refuse it instead, like a body."""
    try:
        unquote_to_bytes(query_string.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            ErrorCode.TEXT_INVALID_ENCODING,
            "The query string is not valid UTF-8 once percent-decoded.",
            status=400,
            details={"location": ["query"], "position": exc.start},
        ) from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not valid JSON")


def _too_deep() -> ApiError:
    return ApiError(
        ErrorCode.JSON_TOO_DEEP,
        f"The JSON body is nested deeper than {JSON_MAX_DEPTH} levels.",
        status=422,
        details={"max_depth": JSON_MAX_DEPTH},
    )


def _label(location: Location) -> str:
    return ".".join(str(_printable(part)) for part in location) if location else "The value"


def _printable(part: str | int) -> str | int:
    return INVALID_CHARACTER.sub("\ufffd", part) if isinstance(part, str) else part


class PageTextMiddleware:
    """The rule above for everything outside the API (pages, fragments, the admin): the path, the
    query string, form fields and uploaded files' names. A page's multipart form is parsed here
    with the default upload handlers (no page sets its own)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            _page_input_check(request)
        except ApiError as error:
            context = {"code": error.code, "message": error.message}
            return render(request, "400.html", context, status=400)
        return self.get_response(request)


def _page_input_check(request: HttpRequest) -> None:
    text_check(request.path, location=["path"])
    _query_string_check(request.META.get("QUERY_STRING", ""))
    _fields_check(request.GET, where="query")
    if request.method == "POST":
        _fields_check(request.POST, where="form")
        _fields_check(request.FILES, where="file")
