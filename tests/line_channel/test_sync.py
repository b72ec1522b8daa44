"""The staff `sync` (UC-SYNC-001) over the webhook: web pages served on 127.0.0.1 fetched again,
what changed embedded by the local provider (tasks run inline), and the result pushed through
the LINE stub to the staff member who asked."""

from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import IntegrityError
from django.utils import timezone
from django_q.models import Schedule, Task

from knowledge.embed.enqueue import RUN_QUEUED_KEY
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.ingest.web_sources import web_source_fetch
from knowledge.models import KnowledgeSource
from line_channel import sync, tasks
from line_channel.messaging import TEXT_LIMIT
from line_channel.models import LineReply, LineStaffUser, LineSyncRun
from line_channel.sync import sync_result_text
from tests.knowledge.ingest.test_web_sources import Site
from tests.line_channel.conftest import sign, text_event, webhook_body

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK = "/integrations/line/webhook"
STAFF = "Ustaff"


def page(title: str, text: str) -> tuple[int, str, bytes]:
    html = f"<html><head><title>{title}</title></head><body><main><p>{text}</p></main></body>"
    return 200, "text/html; charset=utf-8", html.encode()


@pytest.fixture
def site(settings):
    settings.KIOKU_WEB_ALLOW_PRIVATE_HOSTS = True
    site = Site()
    site.pages = {
        "/firmware.html": page("LM-5 firmware", "Firmware 2.3.1 fixes false E-05 alarms."),
        "/recall.html": page("KG-200 recall", "Units made in March 2025 get a new valve."),
    }
    yield site
    site.close()


@pytest.fixture
def embedded_on_write(settings):
    """Every commit of new text queues an embedding run, which runs inline with the offline
    provider: what the cluster does in production."""
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_EMBED_ON_WRITE = True
    caches["shared"].delete(RUN_QUEUED_KEY)  # a table the test database's flush leaves alone
    pipeline_resume()


@pytest.fixture
def web_sources(site, embedded_on_write):
    """Two pages fetched before, and one put in the admin and never fetched."""
    for path in ("/firmware.html", "/recall.html"):
        web_source_fetch(url=f"{site.url}{path}", fetch_interval=timedelta(days=1))
    KnowledgeSource.objects.create(source_type="web", title="Winter tips", uri=f"{site.url}/new")
    site.pages["/new"] = page("LM-5 winter tips", "Keep the sensor above -10 °C.")
    LineStaffUser.objects.create(user_id=STAFF, name="Lin")
    return site


def send(client, text: str, *, user: str = STAFF, number: int = 1) -> None:
    event = text_event(
        text, user=user, event_id=f"01JSYNC{number:018d}", message_id=f"77{number:04d}"
    )
    body = webhook_body(event)
    assert client.post(
        WEBHOOK, data=body, content_type="application/json", HTTP_X_LINE_SIGNATURE=sign(body)
    ).json() == {"new_events": 1}


def reply_texts(line_stub) -> list[str]:
    return [reply["body"]["messages"][0]["text"] for reply in line_stub.replies()]


def push_texts(line_stub) -> list[str]:
    return [push["body"]["messages"][0]["text"] for push in line_stub.pushes()]


def test_sync_reports_added_then_updated_and_failed_in_a_push_after_the_embedding(
    client, line_stub, web_sources
):
    send(client, "sync", number=1)
    assert reply_texts(line_stub) == [
        "Sync started: re-fetching 3 web sources. I will send you what was added, updated and "
        "failed when the new text is searchable."
    ]
    [push] = line_stub.pushes()
    assert push["body"]["to"] == STAFF and push["retry_key"]
    assert push["body"]["messages"][0]["text"] == (
        "Sync done: 3 web sources checked.\n"
        "Added (1):\n- LM-5 winter tips\n"
        "Unchanged: 2\n"
        "The new text is searchable."
    )

    web_sources.pages["/firmware.html"] = page("LM-5 firmware", "Firmware 2.4.0 adds a log.")
    del web_sources.pages["/recall.html"]  # the server now answers 404
    line_stub.reset()
    send(client, " Sync ", number=2)
    [text] = push_texts(line_stub)
    assert text.startswith("Sync done: 3 web sources checked.\nUpdated (1):\n- LM-5 firmware\n")
    assert "Failed (1):\n- KG-200 recall: The server answered HTTP 404 for " in text
    assert text.endswith("Unchanged: 1\nThe new text is searchable.")

    first, second = LineSyncRun.objects.order_by("pk")
    assert (first.status, [item["title"] for item in first.added]) == ("done", ["LM-5 winter tips"])
    assert second.status == "done" and second.pending_chunks == 0
    assert [item["title"] for item in second.updated] == ["LM-5 firmware"]
    assert second.push.push_to == STAFF and second.push.status == "sent"
    recall = KnowledgeSource.objects.get(title="KG-200 recall")
    assert recall.status == "failed" and recall.chunks.exists()  # its earlier text is kept


def test_sync_from_a_user_not_on_the_staff_list_starts_nothing(client, line_stub, web_sources):
    LineStaffUser.objects.create(user_id="Uformer", name="Former", is_active=False)
    hits = web_sources.hits
    send(client, "sync", user="Ucustomer", number=1)
    send(client, "sync", user="Uformer", number=2)
    assert (
        reply_texts(line_stub)
        == ["This command is for staff. Ask your question in your own words instead."] * 2
    )
    assert not LineSyncRun.objects.exists() and not line_stub.pushes()
    assert web_sources.hits == hits


def test_a_second_sync_while_one_is_going_is_told_so_and_starts_nothing(
    client, line_stub, web_sources
):
    going = LineSyncRun.objects.create(
        user_id="Uother", event=_stored_event(), status="fetching", total=3
    )
    hits = web_sources.hits
    send(client, "sync", number=1)
    [text] = reply_texts(line_stub)
    assert text.startswith("A sync is already running (asked by Uother at ")
    assert "fetching the web sources" in text
    assert list(LineSyncRun.objects.all()) == [going] and web_sources.hits == hits
    assert not line_stub.pushes()


def test_a_going_run_that_stopped_moving_no_longer_blocks_the_next(
    client, line_stub, web_sources, settings
):
    stuck = LineSyncRun.objects.create(user_id=STAFF, event=_stored_event(), status="fetching")
    stale = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"] + 1)
    LineSyncRun.objects.filter(pk=stuck.pk).update(updated_at=stale)
    send(client, "sync", number=1)
    stuck.refresh_from_db()
    assert stuck.status == "failed" and stuck.error.startswith("Abandoned")
    assert LineSyncRun.objects.latest("pk").status == "done"
    assert tasks.line_sync_run(stuck.pk) == "failed"  # its task, should it run late, does nothing
    assert len(line_stub.pushes()) == 1


def test_a_push_that_fails_once_is_retried_with_the_same_retry_key(client, line_stub, web_sources):
    line_stub.fail_next(500)  # the push comes first: tasks run inline, before the reply is sent
    send(client, "sync", number=1)
    attempts = [r for r in line_stub.requests if r["path"] == "/v2/bot/message/push"]
    assert [a["status"] for a in attempts] == [500, 200]
    assert attempts[0]["retry_key"] == attempts[1]["retry_key"]
    run = LineSyncRun.objects.get()
    assert run.status == "done"
    assert (run.push.status, run.push.attempts) == ("sent", 2)


def test_running_the_check_again_does_not_deliver_the_push_twice(client, line_stub, web_sources):
    send(client, "sync", number=1)
    run = LineSyncRun.objects.get()
    # As if LINE took the push but its answer was lost: the row says failed, the key was used.
    LineReply.objects.filter(pk=run.push_id).update(status="failed")
    assert tasks.line_sync_check(run.pk) == "done"
    assert tasks.line_sync_run(run.pk) == "done"
    pushes = [r for r in line_stub.requests if r["path"] == "/v2/bot/message/push"]
    assert [p["status"] for p in pushes] == [200, 409]  # LINE delivered it once
    assert LineReply.objects.get(pk=run.push_id).status == "sent"
    assert LineReply.objects.filter(push_to=STAFF).count() == 1


def test_the_push_waits_for_the_embedding_through_a_scheduled_check(
    client, line_stub, web_sources, settings
):
    settings.KIOKU_EMBED_ON_WRITE = False  # the new page's chunks wait for the embedder
    send(client, "sync", number=1)
    run = LineSyncRun.objects.get()
    assert run.status == "embedding" and not line_stub.pushes()
    [check] = Schedule.objects.filter(func="line_channel.tasks.line_sync_check")
    assert (check.args, check.schedule_type) == (f"({run.pk},)", Schedule.ONCE)
    assert check.next_run > timezone.now()
    assert tasks.line_sync_check(run.pk) == "embedding"  # a look before the embedder ran

    embedding_run()  # what the cluster's embedding task does
    assert tasks.line_sync_check(run.pk) == "done"  # what the scheduler starts
    [text] = push_texts(line_stub)
    assert "Added (1):\n- LM-5 winter tips" in text and text.endswith("searchable.")


def test_after_the_wait_bound_the_push_says_how_many_chunks_still_wait(
    client, line_stub, web_sources, settings
):
    settings.KIOKU_EMBED_ON_WRITE = False
    settings.KIOKU_LINE_SYNC_WAIT_SECONDS = 0
    send(client, "sync", number=1)
    run = LineSyncRun.objects.get()
    pending = KnowledgeSource.objects.get(title="LM-5 winter tips").chunks.count()
    assert run.status == "done" and run.pending_chunks == pending > 0
    [text] = push_texts(line_stub)
    assert f"{pending} new chunk(s) were still waiting for the embedding after 0 min" in text
    assert not Schedule.objects.filter(func="line_channel.tasks.line_sync_check").exists()


def test_sync_with_no_web_source_says_there_is_nothing_to_sync(client, line_stub):
    LineStaffUser.objects.create(user_id=STAFF, name="Lin")
    send(client, "sync", number=1)
    [text] = reply_texts(line_stub)
    assert text.startswith("There are no web sources to sync.")
    assert not LineSyncRun.objects.exists() and not line_stub.pushes()


def test_a_long_result_fits_one_line_message_and_names_every_list():
    run = LineSyncRun(
        added=[{"id": n, "title": f"Added page {n} " + "x" * 90, "uri": ""} for n in range(200)],
        updated=[{"id": n, "title": f"Updated {n}", "uri": ""} for n in range(3)],
        failed=[
            {"id": n, "title": f"Gone {n}", "uri": "", "error": "HTTP 404 " + "y" * 300}
            for n in range(100)
        ],
    )
    text = sync_result_text(run)
    assert len(text) <= TEXT_LIMIT
    assert "Updated (3):\n- Updated 0\n- Updated 1\n- Updated 2\n" in text
    assert "Added (200):\n- Added page 0" in text and "- Gone 0: HTTP 404" in text
    assert "more (admin: LINE sync runs)" in text
    assert text.endswith("The new text is searchable.")


def _stored_event():
    from line_channel.models import LineEvent

    return LineEvent.objects.create(
        webhook_event_id="01JEARLIER0000000000000001", kind="message", user_id="Uother", payload={}
    )


def test_a_long_fetch_goes_on_in_a_fresh_task_when_its_time_share_is_up(
    client, line_stub, web_sources, monkeypatch
):
    monkeypatch.setattr(sync, "FETCH_SHARE", 0)  # time is up after each source
    send(client, "sync", number=1)
    run = LineSyncRun.objects.get()
    assert run.status == "done" and len(run.added) == 1 and len(run.unchanged) == 2
    assert Task.objects.filter(func="line_channel.tasks.line_sync_run").count() == 3
    assert len(line_stub.pushes()) == 1


def test_only_one_run_can_be_going_at_a_time():
    event = _stored_event()
    LineSyncRun.objects.create(user_id=STAFF, event=event, status="embedding")
    LineSyncRun.objects.create(user_id=STAFF, event=event, status="done")
    with pytest.raises(IntegrityError):
        LineSyncRun.objects.create(user_id="Uother", event=event, status="queued")


def test_the_admin_lists_sync_runs_read_only(admin_client, line_stub, web_sources):
    send(admin_client, "sync", number=1)
    run = LineSyncRun.objects.get()
    listing = admin_client.get("/admin/line_channel/linesyncrun/")
    assert listing.status_code == 200 and STAFF in listing.content.decode()
    detail = admin_client.get(f"/admin/line_channel/linesyncrun/{run.pk}/change/")
    assert detail.status_code == 200 and "LM-5 winter tips" in detail.content.decode()
    assert admin_client.get("/admin/line_channel/linesyncrun/add/").status_code == 403


def test_a_run_found_abandoned_while_it_fetched_stays_failed(line_stub, web_sources, monkeypatch):
    run = LineSyncRun.objects.create(user_id=STAFF, event=_stored_event())
    original = sync.web_source_refetch

    def refetch_while_a_new_sync_gives_up_on_this_one(*, source):
        LineSyncRun.objects.filter(pk=run.pk).update(status="failed", error="Abandoned")
        return original(source=source)

    monkeypatch.setattr(sync, "web_source_refetch", refetch_while_a_new_sync_gives_up_on_this_one)
    assert tasks.line_sync_run(run.pk) == "failed"
    assert not line_stub.pushes()
