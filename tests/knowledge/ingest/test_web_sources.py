import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from knowledge.ingest.web_sources import (
    WebFetchError,
    validate_url,
    web_source_fetch,
    web_sources_refresh,
)
from knowledge.models import KnowledgeSource
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db

PAGE = """<html><head><title>Lumio LM-5 bulletin</title><style>.x{}</style></head>
<body><nav>Home | Products</nav><main><h1>LM-5 cold weather</h1>
<p>Firmware 2.3.1 fixes false E-05 alarms below 0 °C.</p></main></body></html>"""


class Site:
    """A tiny web server on 127.0.0.1 whose pages the test can change."""

    def __init__(self):
        self.pages = {"/bulletin.html": (200, "text/html; charset=utf-8", PAGE.encode())}
        self.hits = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.hits += 1
                if self.path == "/slow":
                    time.sleep(3)
                status, content_type, body = site.pages.get(
                    self.path, (404, "text/plain", b"missing")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(settings):
    settings.KIOKU_WEB_ALLOW_PRIVATE_HOSTS = True
    site = Site()
    yield site
    site.close()


def test_a_page_is_fetched_and_ingested_without_navigation(site):
    result = web_source_fetch(url=f"{site.url}/bulletin.html", fetch_interval=timedelta(hours=1))
    assert result.outcome == "created"
    source = result.source
    assert (source.source_type, source.title) == ("web", "Lumio LM-5 bulletin")
    text = " ".join(source.chunks.values_list("content", flat=True))
    assert "Firmware 2.3.1" in text and "Products" not in text
    assert source.fetch_interval == timedelta(hours=1)


def test_only_http_and_https_are_fetched():
    for url in ("file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "http://"):
        with pytest.raises(WebFetchError) as excinfo:
            validate_url(url)
        assert excinfo.value.code == "WEB_INVALID_URL"


def test_private_hosts_are_refused_unless_allowed(settings):
    settings.KIOKU_WEB_ALLOW_PRIVATE_HOSTS = False
    with pytest.raises(WebFetchError) as excinfo:
        validate_url("http://127.0.0.1:8000/admin/")
    assert excinfo.value.code == "WEB_FORBIDDEN_HOST"


def test_a_slow_server_times_out(site, settings):
    settings.KIOKU_WEB_TIMEOUT_SECONDS = 1
    with pytest.raises(WebFetchError) as excinfo:
        web_source_fetch(url=f"{site.url}/slow")
    assert excinfo.value.code == "WEB_FETCH_TIMEOUT"
    assert not KnowledgeSource.objects.exists()


def test_a_page_over_the_size_limit_is_refused(site, settings):
    settings.KIOKU_WEB_MAX_BYTES = 1024
    site.pages["/big.html"] = (200, "text/html", b"<p>" + b"x" * 5000 + b"</p>")
    with pytest.raises(WebFetchError) as excinfo:
        web_source_fetch(url=f"{site.url}/big.html")
    assert excinfo.value.code == "WEB_TOO_LARGE"


def test_http_errors_are_reported(site):
    with pytest.raises(WebFetchError) as excinfo:
        web_source_fetch(url=f"{site.url}/missing.html")
    assert excinfo.value.code == "WEB_FETCH_FAILED" and "404" in excinfo.value.message


def test_refresh_refetches_due_pages_and_skips_unchanged(site):
    url = f"{site.url}/bulletin.html"
    source = web_source_fetch(url=url, fetch_interval=timedelta(minutes=30)).source
    assert web_sources_refresh() == {}  # not due yet
    KnowledgeSource.objects.filter(pk=source.pk).update(
        fetched_at=timezone.now() - timedelta(hours=1)
    )
    assert web_sources_refresh() == {"unchanged": 1}
    KnowledgeSource.objects.filter(pk=source.pk).update(
        fetched_at=timezone.now() - timedelta(hours=1)
    )
    site.pages["/bulletin.html"] = (200, "text/html", PAGE.replace("2.3.1", "2.3.2").encode())
    assert web_sources_refresh() == {"updated": 1}
    source.refresh_from_db()
    assert source.version == 2


def test_a_failing_refetch_marks_the_source_and_keeps_its_chunks(site):
    url = f"{site.url}/bulletin.html"
    source = web_source_fetch(url=url, fetch_interval=timedelta(minutes=30)).source
    chunks = source.chunks.count()
    del site.pages["/bulletin.html"]
    KnowledgeSource.objects.filter(pk=source.pk).update(
        fetched_at=timezone.now() - timedelta(hours=1)
    )
    assert web_sources_refresh() == {"failed": 1}
    source.refresh_from_db()
    assert (source.status, source.error_code) == ("failed", "WEB_FETCH_FAILED")
    assert source.chunks.count() == chunks


def test_the_refresh_schedule_is_declared_and_synced():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("sync_schedules")
    call_command("sync_schedules")
    schedule = Schedule.objects.get(func="knowledge.tasks.web_sources_refresh")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.repeats == -1


def test_refresh_task_runs_through_django_q(site):
    from django_q.tasks import async_task, result

    web_source_fetch(url=f"{site.url}/bulletin.html", fetch_interval=timedelta(minutes=5))
    KnowledgeSource.objects.update(fetched_at=timezone.now() - timedelta(hours=1))
    task_id = async_task("knowledge.tasks.web_sources_refresh")
    assert result(task_id) == {"unchanged": 1}


def test_api_fetches_a_page(api, site):
    response = api.post(
        "/api/v1/sources/web",
        json={"url": f"{site.url}/bulletin.html", "fetch_interval_minutes": 60},
    )
    assert response.status_code == 201, response.content
    assert response.json()["source"]["fetch_interval_minutes"] == 60


def test_api_rejects_bad_urls_and_reports_fetch_errors(api, site):
    assert_error_shape(
        api.post("/api/v1/sources/web", json={"url": "file:///etc/passwd"}), 422, "WEB_INVALID_URL"
    )
    response = api.post("/api/v1/sources/web", json={"url": f"{site.url}/nope.html"})
    assert_error_shape(response, 502, "WEB_FETCH_FAILED")
