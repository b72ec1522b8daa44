"""Queueing work: schedules after an outage, enqueues that must not happen, enqueues that never
happened."""

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from core.schedules import SCHEDULES, schedules_sync
from knowledge.embed import enqueue
from knowledge.embed.pipeline import pipeline_resume
from knowledge.ingest.ingestion import source_ingest_text
from knowledge.models import KnowledgeChunk, KnowledgeSource
from tests.faults.conftest import ROOT, subprocess_env, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]
EMBED = "knowledge.tasks.embedding_run"


@pytest.fixture(autouse=True)
def _running_pipeline(transactional_db):
    pipeline_resume()


@pytest.fixture
def enqueue_on_write(settings, broker_enqueue):
    """Ingestion queues its embedding run on commit, on the real broker, not held back by a run
    an earlier test queued (the shared cache outlives a test database's flush)."""
    settings.KIOKU_EMBED_ON_WRITE = True
    caches["shared"].delete(enqueue.RUN_QUEUED_KEY)


def test_a_cluster_down_for_many_intervals_runs_each_sweeper_once(start_cluster):
    schedules_sync()
    # The clusters were down for three hours: 180 missed runs of the every-minute sweeper.
    Schedule.objects.update(next_run=timezone.now() - timedelta(hours=3))
    start_cluster(timeout=20)
    start_cluster(timeout=20)  # two schedulers race for the same schedules
    started = time.monotonic()

    names = [spec.name for spec in SCHEDULES]
    wait_until(
        lambda: set(Task.objects.values_list("group", flat=True)) >= set(names),
        timeout=60,
        message="the sweepers did not run",
    )
    # django-q2 calls its scheduler 30 s after a cluster starts, then every 30 s: let both
    # clusters' schedulers have had their first turn (and neither its second).
    time.sleep(max(0.0, 33 - (time.monotonic() - started)))
    wait_until(lambda: not OrmQ.objects.exists(), timeout=30, message="tasks still queued")
    runs = {name: Task.objects.filter(group=name).count() for name in names}
    assert runs == dict.fromkeys(names, 1)
    assert not Schedule.objects.filter(next_run__lte=timezone.now() - timedelta(minutes=1)).exists()


def test_an_enqueue_inside_a_rolled_back_transaction_queues_no_task(enqueue_on_write):
    with pytest.raises(RuntimeError), transaction.atomic():
        source_ingest_text(text="Rolled back: the lock shows E-01.", uri="kb://rolled-back")
        raise RuntimeError("the request failed after the write")
    assert not KnowledgeSource.objects.exists()
    assert not OrmQ.objects.exists()

    source_ingest_text(text="Committed: the lock shows E-02.", uri="kb://committed")
    assert OrmQ.objects.count() == 1  # the same path, committed, queues its run


CRASH_AFTER_COMMIT = """
import os, django
django.setup()
from django.db import transaction
from knowledge.ingest.ingestion import source_ingest_text
with transaction.atomic():
    # Runs first among the commit hooks: the process dies after the commit, before the
    # embedding run is queued.
    transaction.on_commit(lambda: os._exit(9))
    source_ingest_text(text="Saved, never queued: the lock shows E-03.", uri="kb://crashed")
"""


def test_rows_saved_by_a_process_that_crashed_before_enqueueing_are_found_by_the_sweeper(
    start_cluster, broker_enqueue
):
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_COMMIT],
        cwd=ROOT,
        env=subprocess_env(KIOKU_EMBED_ON_WRITE="true"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr
    source = KnowledgeSource.objects.get(uri="kb://crashed")
    assert source.chunks.filter(embedding_status="pending").exists()
    assert not OrmQ.objects.exists()  # nothing was queued

    schedules_sync()
    Schedule.objects.exclude(func=EMBED).update(next_run=timezone.now() + timedelta(hours=1))
    Schedule.objects.filter(func=EMBED).update(next_run=timezone.now() - timedelta(minutes=1))
    start_cluster(timeout=20)
    from django_q.scheduler import scheduler

    scheduler()  # the cluster's scheduler pass, without waiting the 30 s for it
    wait_until(
        lambda: Task.objects.filter(func=EMBED).exists(),
        timeout=60,
        message="the sweeper did not run",
    )
    assert Task.objects.get(func=EMBED).success
    assert not KnowledgeChunk.objects.exclude(embedding_status="done").exists()
    source.refresh_from_db()
    assert source.status == "ready"
