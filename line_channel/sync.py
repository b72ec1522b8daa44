"""The staff `sync` command (UC-SYNC-001): every web source fetched again, what changed embedded,
and a push to the staff member who asked when that work is done, naming what was added, updated
and failed.

Which sources: every enabled, current source whose uri is http(s), due or not and with a re-fetch
interval or without one. The interval is the schedule's business; a staff member who types `sync`
wants everything from the web now (as UC-SYNC-001 re-reads its whole document source).

"Added" is a source whose text enters the knowledge base for the first time (a web source put in
the admin and never fetched, or one whose earlier fetches all failed); "updated" one whose text
changed; "failed" one that could not be fetched or read (its earlier text, if any, stays).
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from knowledge.ingest.web_sources import web_source_refetch, web_sources
from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource
from line_channel.messaging import TEXT_LIMIT, line_message_send, text_message
from line_channel.models import (
    SYNC_GOING,
    LineEvent,
    LineReply,
    LineStaffUser,
    LineSyncRun,
    SyncStatus,
)

logger = logging.getLogger(__name__)
# Seconds between two looks at the embedding of a run's changes. django-q2's scheduler starts a
# due schedule about once a minute, so a shorter wait would not make the push come sooner.
CHECK_EVERY_SECONDS = 30
# The share of a task's time limit (Q_CLUSTER["timeout"]) one task spends fetching.
FETCH_SHARE = 0.5
TITLE_LIMIT = 100  # characters of a source's title in the push
ERROR_LIMIT = 200  # characters of a failure's message in the push


def sync_sources() -> QuerySet[KnowledgeSource]:
    """The sources a `sync` fetches again (see the module's docstring for why all of them)."""
    return web_sources().filter(enabled=True, superseded_by__isnull=True).order_by("pk")


@transaction.atomic
def line_sync_start(*, event: LineEvent) -> str:
    """Start a sync for the staff member who sent `event` (the caller checked they are staff) and
    say so; the work is queued when the transaction commits. One run at a time: while one is
    going, the answer says so and nothing starts. With no web source, nothing starts either."""
    _abandoned_runs_fail()
    going = LineSyncRun.objects.filter(status__in=SYNC_GOING).first()
    if going is not None:
        return _already_going_text(going)
    count = sync_sources().count()
    if count == 0:
        return (
            "There are no web sources to sync. Add a page with POST /api/v1/sources/web "
            "or in the admin, then send sync again."
        )
    try:
        with transaction.atomic():
            run = LineSyncRun.objects.create(user_id=event.user_id, event=event, total=count)
    except IntegrityError:  # another staff member's sync started a moment ago
        return _already_going_text(LineSyncRun.objects.filter(status__in=SYNC_GOING).first())
    transaction.on_commit(lambda: _queue("line_channel.tasks.line_sync_run", run.pk))
    return (
        f"Sync started: re-fetching {count} web source{'s' if count != 1 else ''}. "
        "I will send you what was added, updated and failed when the new text is searchable."
    )


def _queue(task: str, run_id: int) -> None:
    from django_q.tasks import async_task

    async_task(task, run_id)


def _abandoned_runs_fail() -> None:
    """A going run that has not moved for longer than django-q2 takes to hand a task to another
    worker (`Q_CLUSTER["retry"]`) lost its worker or its queued task: it stops holding back the
    next sync. Should its task run after all, it finds the run failed and does nothing."""
    stale = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"])
    LineSyncRun.objects.filter(status__in=SYNC_GOING, updated_at__lt=stale).update(
        status=SyncStatus.FAILED,
        error="Abandoned: it stopped moving (its worker stopped or its task was lost).",
        finished_at=timezone.now(),
    )


def _already_going_text(run: LineSyncRun | None) -> str:
    if run is None:  # it finished between the insert that failed and this read
        return "A sync has just run; send sync again to start another."
    name = (
        LineStaffUser.objects.filter(user_id=run.user_id).values_list("name", flat=True).first()
        or run.user_id
    )
    asked = timezone.localtime(run.created_at).strftime("%H:%M")
    return (
        f"A sync is already running (asked by {name} at {asked}, "
        f"{run.get_status_display().lower()}). Its result goes to {name}; send sync again "
        "after it is done."
    )


def line_sync_run(*, run_id: int) -> LineSyncRun:
    """The queued work of a run: fetch every web source again, recording each outcome as it
    goes, then look at the embedding (line_sync_check). Safe to run twice: a run taken up again
    fetches only the sources it has no outcome for; a finished or failed run is left alone."""
    run = LineSyncRun.objects.get(pk=run_id)
    if run.status in (SyncStatus.QUEUED, SyncStatus.FETCHING) and not _sources_fetch(run):
        _queue("line_channel.tasks.line_sync_run", run.pk)  # the next task goes on from here
        return run
    return line_sync_check(run_id=run.pk)


def _sources_fetch(run: LineSyncRun) -> bool:
    """Fetch the sources the run has no outcome for; False when this task's time is up first.
    Why a time share: django-q2 kills a task after Q_CLUSTER["timeout"] and retries it only a
    few times, so a long list of slow pages goes on in a fresh task instead of being killed."""
    time_up = time.monotonic() + settings.Q_CLUSTER["timeout"] * FETCH_SHARE
    sources = list(sync_sources())
    seen = {item["id"] for item in run.added + run.updated + run.unchanged + run.failed}
    run.status = SyncStatus.FETCHING
    run.started_at = run.started_at or timezone.now()
    run.total = len(sources)
    run.save(update_fields=["status", "started_at", "total", "updated_at"])
    fetched_here = 0
    for source in sources:
        if source.pk in seen:
            continue
        if time.monotonic() > time_up and fetched_here:
            return False
        fetched_here += 1
        had_text = source.chunks.exists()
        error = ""
        try:
            result = web_source_refetch(source=source)
            outcome, error, title = result.outcome, result.error_message, result.source.title
        except Exception as exc:  # one source's bug must not cost the staff member the report
            logger.exception("LINE sync %s: source %s", run.pk, source.pk)
            outcome, error, title = "failed", f"{type(exc).__name__}: {exc}", source.title
        item = {"id": source.pk, "title": title, "uri": source.uri}
        if outcome == "failed":
            item["error"] = error or "It could not be read."
        kind = {
            "created": "added",
            "updated": "updated" if had_text else "added",
            "unchanged": "unchanged",
        }.get(outcome, "failed")
        getattr(run, kind).append(item)
        run.save(update_fields=[kind, "updated_at"])  # progress kept: a retry goes on from here
    # Only a run still fetching moves on: one found abandoned meanwhile stays failed.
    LineSyncRun.objects.filter(pk=run.pk, status=SyncStatus.FETCHING).update(
        status=SyncStatus.EMBEDDING, fetched_at=timezone.now(), updated_at=timezone.now()
    )
    return True


def line_sync_check(*, run_id: int) -> LineSyncRun:
    """Once the added and updated sources' chunks are embedded (or KIOKU_LINE_SYNC_WAIT_SECONDS
    after the fetch, saying how many still wait), finish the run and push its result. Until
    then, look again in CHECK_EVERY_SECONDS."""
    run = LineSyncRun.objects.get(pk=run_id)
    if run.status == SyncStatus.DONE and run.push_id:
        line_message_send(reply_id=run.push_id)  # a push its worker did not get to send goes now
        return run
    if run.status != SyncStatus.EMBEDDING:
        return run
    pending, dead = _changed_chunks(run)
    deadline = run.fetched_at + timedelta(seconds=settings.KIOKU_LINE_SYNC_WAIT_SECONDS)
    if pending and timezone.now() < deadline:
        # Why a scheduled look and not a wait in this task: the embedding of a large change
        # takes minutes, and a worker held that long is one fewer for the embedding runs this
        # push waits for (two workers by default). A look takes milliseconds; django-q2 deletes
        # a run-once schedule after it has run.
        from django_q.models import Schedule
        from django_q.tasks import schedule

        run.save(update_fields=["updated_at"])  # still moving: not abandoned
        schedule(
            "line_channel.tasks.line_sync_check",
            run.pk,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + timedelta(seconds=CHECK_EVERY_SECONDS),
        )
        return run
    with transaction.atomic():
        run = LineSyncRun.objects.select_for_update().get(pk=run_id)
        if run.status != SyncStatus.EMBEDDING:  # a second look finished it meanwhile
            return run
        run.pending_chunks, run.dead_chunks = pending, dead
        run.status = SyncStatus.DONE
        run.finished_at = timezone.now()
        run.push = LineReply.objects.create(
            event=run.event, push_to=run.user_id, messages=[text_message(sync_result_text(run))]
        )
        run.save()
    line_message_send(reply_id=run.push_id)
    return run


def _changed_chunks(run: LineSyncRun) -> tuple[int, int]:
    """(pending, dead) chunks of the sources the run added or updated."""
    counts = KnowledgeChunk.objects.filter(
        source_id__in=[item["id"] for item in run.added + run.updated]
    ).aggregate(
        pending=Count("pk", filter=Q(embedding_status=EmbeddingStatus.PENDING)),
        dead=Count("pk", filter=Q(embedding_status=EmbeddingStatus.DEAD)),
    )
    return counts["pending"], counts["dead"]


def sync_result_text(run: LineSyncRun) -> str:
    """The push: counts, the names of what was added, updated and failed (with why), and the
    state of the embedding, within LINE's text limit. When the names do not all fit, each list
    gets its share and ends with how many more the admin's *LINE sync runs* page shows."""
    fetched = len(run.added) + len(run.updated) + len(run.unchanged) + len(run.failed)
    head = [f"Sync done: {fetched} web source{'s' if fetched != 1 else ''} checked."]
    if run.pending_chunks:
        embedding = (
            f"{run.pending_chunks} new chunk(s) were still waiting for the embedding after "
            f"{settings.KIOKU_LINE_SYNC_WAIT_SECONDS // 60} min; they become searchable as "
            "soon as it catches up (send status to see the embedding)."
        )
    elif run.added or run.updated:
        embedding = "The new text is searchable."
    else:
        embedding = "Nothing changed."
    tail = [f"Unchanged: {len(run.unchanged)}", embedding]
    if run.dead_chunks:
        tail.append(f"{run.dead_chunks} chunk(s) could not be embedded (see dead letters).")
    sections = [
        (label, items)
        for label, items in (("Added", run.added), ("Updated", run.updated), ("Failed", run.failed))
        if items
    ]
    more = "… and {} more (admin: LINE sync runs)"
    # Each section's header and its "… and N more" line are paid for before any name.
    budget = (
        TEXT_LIMIT - len("\n".join(head + tail)) - sum(len(label) + 60 for label, _ in sections)
    )
    body: list[str] = []
    for position, (label, items) in enumerate(sections):
        share = budget // (len(sections) - position)
        shown = []
        for item in items:
            line = "- " + _clip(item["title"], TITLE_LIMIT)
            if "error" in item:
                line += ": " + _clip(item["error"], ERROR_LIMIT)
            if len(line) + 1 > share:
                break
            shown.append(line)
            share -= len(line) + 1
            budget -= len(line) + 1
        body += [f"{label} ({len(items)}):", *shown]
        if len(shown) < len(items):
            body.append(more.format(len(items) - len(shown)))
    return "\n".join(head + body + tail)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
