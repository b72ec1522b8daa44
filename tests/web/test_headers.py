"""Every response carries the Content-Security-Policy and the security headers; the production
settings pass `manage.py check --deploy`."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PAGE_NAMESPACES = {"core", "knowledge", "sessions_app", "dispatch", "quality"}
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}


def page_routes() -> list[tuple[str, URLPattern]]:
    """Every named route of the page apps, as (namespace:name, pattern)."""
    routes = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace in PAGE_NAMESPACES:
            routes += [(f"{entry.namespace}:{p.name}", p) for p in entry.url_patterns if p.name]
    return routes


def page_urls(site) -> list[str]:
    ids = {
        "source_id": site.source_id,
        "chunk_id": site.chunk_id,
        "answer_id": site.answer_id,
        "key": site.session_key,
        "card_id": site.card_id,
        "order_id": site.order_id,
        "photo_id": 1,  # no photo: its 404 page must carry the headers too
        "set_id": site.set_id,
        "case_id": site.case_id,
        "expected_id": site.expected_id,
        "run_id": site.run_id,
    }
    urls = []
    for name, pattern in page_routes():
        kwargs = {param: ids[param] for param in pattern.pattern.regex.groupindex}
        urls.append(reverse(name, kwargs=kwargs))
    return urls


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";") if part.strip())


def test_the_walk_covers_every_page_route():
    assert len(page_routes()) >= 35
    assert {"knowledge:search", "knowledge:ask", "dispatch:order-list", "core:home"} <= {
        name for name, _ in page_routes()
    }


def test_every_page_carries_the_policy_whatever_it_answers(curator, hostile_site):
    statuses = set()
    for url in page_urls(hostile_site) + ["/accounts/login/", "/admin/", "/no-such-page/"]:
        response = curator.get(url)
        statuses.add(response.status_code)
        assert policy(response).items() >= POLICY.items(), url
        assert "unsafe-inline" not in response["Content-Security-Policy"], url
        assert "unsafe-eval" not in response["Content-Security-Policy"], url
    assert {200, 404, 405} <= statuses  # pages, the missing photo, POST-only actions


def test_htmx_fragments_and_the_api_carry_it_too(curator, hostile_site, api):
    fragment = curator.get("/knowledge/search/?q=battery", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    assert policy(fragment)["script-src"] == "'self'"
    assert policy(api.get("/api/v1/sources"))["default-src"] == "'self'"


def test_pages_send_the_security_headers(client):
    response = client.get("/accounts/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_csrf_and_session_cookies_are_out_of_scripts_reach(client, staff_user):
    response = client.post(
        "/accounts/login/", {"username": "curator", "password": "correct-horse-battery"}
    )
    assert response.status_code == 302
    assert response.cookies["sessionid"]["httponly"]
    assert response.cookies["csrftoken"]["httponly"]
    assert response.cookies["sessionid"]["samesite"] == "Lax"


# --- The production settings, in a fresh process ---------------------------------------------


def run_manage(*args: str, **environ: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KIOKU_HTTPS"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "config.settings", **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "kioku.example.com",
    "KIOKU_HTTPS": "true",
}


def test_check_deploy_is_clean_under_the_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_says_what_is_missing_without_https():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "KIOKU_HTTPS": "false"}
    )
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr + result.stdout


def production_get(path: str, *, proto: str) -> dict[str, str]:
    """The status and headers of a GET in a fresh process with the production settings, arriving
    through a TLS proxy that says `X-Forwarded-Proto: proto` (paths that need no database)."""
    code = (
        "import django, json; django.setup()\n"
        "from django.test import Client\n"
        f"r = Client().get({path!r}, headers={{'X-Forwarded-Proto': {proto!r}}},"
        " HTTP_HOST='kioku.example.com')\n"
        "print(json.dumps({'status': r.status_code, **dict(r.headers)}))\n"
    )
    keep = {k: v for k, v in os.environ.items() if not k.startswith("KIOKU_HTTPS")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "config.settings", **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_sends_hsts_and_the_policy_over_https():
    headers = production_get("/no-such-page/", proto="https")
    assert headers["status"] == 404
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_production_redirects_plain_http_to_https():
    headers = production_get("/knowledge/search/?q=lock", proto="http")
    assert headers["status"] == 301
    assert headers["Location"] == "https://kioku.example.com/knowledge/search/?q=lock"
