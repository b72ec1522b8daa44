"""Shared fixtures: django-q2 runs tasks inline, API keys and an API client, the local
OpenAI-compatible stub server, and the Playwright + Debian Chromium browser harness."""

import os
import shutil
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the test
# itself are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("KIOKU_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_inline():
    # django-q2 reads `sync` at import time, so flip its Conf directly.
    from django_q.conf import Conf

    previous = Conf.SYNC
    Conf.SYNC = True
    yield
    Conf.SYNC = previous


@pytest.fixture(autouse=True, scope="session")
def _side_query_connections_closed(django_db_setup, django_db_blocker):
    """Hybrid search's side threads hold their own connections: close them before the test
    database is dropped."""
    yield
    from knowledge.search import parallel_reads

    parallel_reads.shutdown()


@pytest.fixture(autouse=True)
def _active_space_unseen():
    """Each test's database starts over: the active space another test's search saw is not
    this one's (search would notice and run again, but only after embedding the query in it)."""
    from knowledge.embed.spaces import active_space_forget

    active_space_forget()


@pytest.fixture(autouse=True)
def _no_common_term_statistics(settings):
    """Statistics that autovacuum's ANALYZE keeps from earlier tests' rows must not change which
    terms a keyword search uses; tests of that rule set KIOKU_SEARCH_COMMON_TERM_SHARE."""
    settings.KIOKU_SEARCH_COMMON_TERM_SHARE = 1.0


@pytest.fixture(autouse=True)
def _no_embedding_on_write(settings):
    # Tasks run inline in tests, so embedding on every commit would make ingestion tests depend
    # on the provider; tests of that path turn it back on.
    settings.KIOKU_EMBED_ON_WRITE = False
    # …and an evaluation run queued then (the demo's first run) must not wait for embeddings
    # that no worker will make.
    settings.KIOKU_EVAL_WAIT_FOR_INDEX_SECONDS = 0


@pytest.fixture
def make_api_key(db):
    from core.services import api_key_create

    counter = {"n": 0}

    def make(*scopes: str, name: str | None = None) -> str:
        counter["n"] += 1
        _, raw_key = api_key_create(
            name=name or f"test-key-{counter['n']}", scopes=scopes or ("read",)
        )
        return raw_key

    return make


class ApiClient:
    """Django's test client speaking JSON with a Bearer key."""

    def __init__(self, client, key: str | None):
        self.client = client
        self.key = key

    def _headers(self, extra):
        headers = dict(extra or {})
        if self.key:
            headers.setdefault("Authorization", f"Bearer {self.key}")
        return headers

    def get(self, path, headers=None, **kwargs):
        return self.client.get(path, headers=self._headers(headers), **kwargs)

    def delete(self, path, headers=None, **kwargs):
        return self.client.delete(path, headers=self._headers(headers), **kwargs)

    def post(self, path, json=None, headers=None, **kwargs):
        if json is not None:
            kwargs.setdefault("content_type", "application/json")
            kwargs["data"] = json
        return self.client.post(path, headers=self._headers(headers), **kwargs)

    def patch(self, path, json=None, headers=None, **kwargs):
        return self.client.patch(
            path,
            data=json,
            content_type="application/json",
            headers=self._headers(headers),
            **kwargs,
        )


@pytest.fixture
def api(client, make_api_key):
    """An API client holding a key with every scope."""
    return ApiClient(client, make_api_key("admin"))


@pytest.fixture
def api_as(client, make_api_key):
    def build(*scopes: str) -> ApiClient:
        return ApiClient(client, make_api_key(*scopes) if scopes else None)

    return build


@pytest.fixture(scope="session")
def _openai_stub_server():
    from support.openai_stub import OpenAIStub

    stub = OpenAIStub()
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def openai_stub(_openai_stub_server, settings):
    """The local OpenAI-compatible server on 127.0.0.1, with settings pointing at it."""
    _openai_stub_server.reset()
    settings.OPENAI_API_KEY = _openai_stub_server.api_key
    settings.OPENAI_BASE_URL = _openai_stub_server.base_url
    yield _openai_stub_server
    _openai_stub_server.reset()


# --- Browser harness --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


# Every page a browser test opens runs under Kioku's Content-Security-Policy: a violation (an
# inline script or style, eval, a foreign origin) is reported to the console and fails the test.
CSP_VIOLATION_REPORTER = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI
    + " at " + event.sourceFile + ":" + event.lineNumber + " " + (event.sample || ""));
});
"""


def is_csp_violation(text: str) -> bool:
    return text.startswith("CSP violation:") or "Content Security Policy" in text


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(CSP_VIOLATION_REPORTER)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}")
            if is_csp_violation(message.text)
            else None
        ),
    )
    page.csp_violations = violations
    yield page
    context.close()
    assert not violations, "\n".join(violations)


@pytest.fixture
def make_user(db, django_user_model):
    """A user in the given groups of core/permissions.py (viewer, curator, dispatcher, admin)."""
    from django.contrib.auth.models import Group

    # No password unless a test logs in with one: hashing it costs ~0.3 s per user.
    def make(username: str, *groups: str, is_staff: bool = False, password: str | None = None):
        user = django_user_model.objects.create_user(
            username, f"{username}@kioku.invalid", password, is_staff=is_staff
        )
        user.groups.set(Group.objects.filter(name__in=groups))
        return user

    return make


@pytest.fixture
def staff_user(make_user):
    """Staff in the curator and dispatcher groups: may do everything the pages offer."""
    return make_user(
        "curator", "curator", "dispatcher", is_staff=True, password="correct-horse-battery"
    )


@pytest.fixture
def curator(client, staff_user):
    """The test client logged in as a staff user (may curate and dispatch)."""
    client.force_login(staff_user)
    return client


@pytest.fixture
def agent(client, make_user):
    """The test client logged in as a support agent in the viewer group: may read, may not
    curate."""
    client.force_login(make_user("agent", "viewer", password="agent-pass-123"))
    return client


@pytest.fixture
def logged_in_page(page, staff_user):
    page.goto("/accounts/login/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page


@pytest.fixture
def screenshot():
    def take(page, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def vector_indexes_restored(transactional_db, settings):
    """Model-switch tests create and drop vector indexes (DDL outlives the test's flush): give the
    next test the index of the configured size on slot 1 again."""
    from knowledge.embed.spaces import SpaceState, VectorSpace, vector_indexes_sync
    from knowledge.models import EmbeddingSpaceState

    dimensions = settings.KIOKU_EMBEDDING_DIMENSIONS
    yield
    EmbeddingSpaceState.objects.all().delete()
    vector_indexes_sync(SpaceState(active=VectorSpace("any", dimensions, 1)))


@pytest.fixture
def embedded_manual(settings):
    """The KG-200 manual, ingested and embedded offline (local provider): ready to search and ask."""
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from tests.knowledge.factories import make_source

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    source = make_source(uri="kb://manual")
    embedding_run()
    return source
