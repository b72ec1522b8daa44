"""Assertions and readers shared by the API and page tests of every app."""

import html
import re


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) - {"aliases"} == {"code", "message", "details"}
    # "aliases": earlier names of the same code, only where a code was renamed.
    assert body.get("aliases", ["X"]) and all(isinstance(a, str) for a in body.get("aliases", []))
    assert body["code"] == code
    assert body["message"]
    return body


def visible_text(response) -> str:
    """The response body as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    text = re.sub(r"<[^>]+>", "", response.content.decode())
    return re.sub(r"\s+", " ", html.unescape(text))
