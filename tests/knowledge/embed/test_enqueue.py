"""knowledge/embed/enqueue.py: a commit queues an embedding run unless one is queued and not
started yet — then that run sees the commit's rows. On the real ORM broker."""

import time

import pytest
from django.core.cache import caches
from django_q.conf import Conf
from django_q.models import OrmQ

from knowledge import tasks
from knowledge.embed import enqueue
from knowledge.embed.enqueue import RUN_QUEUED_KEY
from tests.knowledge.factories import make_chunks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def queued_on_the_broker(settings, monkeypatch):
    settings.OPENAI_API_KEY = ""  # the local provider: the run embeds without a server
    settings.KIOKU_EMBED_ON_WRITE = True
    monkeypatch.setattr(Conf, "SYNC", False)
    # The shared cache is a table the test database's flush does not empty.
    caches["shared"].delete(RUN_QUEUED_KEY)


def test_commits_while_a_run_waits_in_the_queue_share_it():
    for _ in range(3):
        make_chunks(2)
    assert OrmQ.objects.count() == 1


def test_a_commit_after_the_queued_run_started_queues_the_next_one():
    # Found by bench/load.py: a per-process time window dropped this enqueue, and the text
    # waited up to a minute for the sweeper.
    first = make_chunks(2)
    tasks.embedding_run()  # what the worker does with the queued task
    assert set(first.chunks.values_list("embedding_status", flat=True)) == {"done"}
    second = make_chunks(2)
    assert OrmQ.objects.count() == 2
    tasks.embedding_run()
    assert set(second.chunks.values_list("embedding_status", flat=True)) == {"done"}


def test_a_run_that_never_starts_stops_holding_back_new_ones(monkeypatch):
    monkeypatch.setattr(enqueue, "RUN_QUEUED_SECONDS", 1)
    make_chunks(2)
    OrmQ.objects.all().delete()  # its cluster lost it
    time.sleep(2.1)  # the database cache keeps whole seconds
    make_chunks(2)
    assert OrmQ.objects.count() == 1
