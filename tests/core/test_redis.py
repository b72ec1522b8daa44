"""REDIS_URL on a real Redis (Debian's redis-server, started here): django-q2's Redis broker
carries the embedding task from the process that ingests to a qcluster, and the caches that
every process must share (throttling, API keys) are shared. "Two processes" here are the test
process and a `manage.py shell` subprocess, each with its own Redis client, talking to the same
Redis server — which is what a deployment's web processes do."""

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from django_q.models import OrmQ, Task

from knowledge.embed.pipeline import pipeline_resume
from knowledge.models import KnowledgeChunk, KnowledgeSource
from tests.core.engines import free_port, redis_start
from tests.faults import conftest as faults
from tests.faults.conftest import ROOT, subprocess_env, wait_until

# The fault tests' real qcluster, its own OpenAI stub and the log of vector writes.
start_cluster = faults.start_cluster
openai_stub = faults.openai_stub
vector_writes = faults.vector_writes

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    server = redis_start(tmp_path)
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()


@pytest.fixture
def redis_caches(settings, redis_url) -> str:
    """This test process's caches in Redis, as config/settings.py makes them with REDIS_URL."""
    settings.CACHES = {
        name: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"kioku-{name}",
        }
        for name in ("default", "shared")
    }
    return redis_url


def manage_shell(code: str, **env: str) -> object:
    """Run `code` in `manage.py shell` on the test database; it prints one JSON line last."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


INGEST = """
import json
from knowledge.ingest.ingestion import source_ingest_text
text = "# Redis batch\\n\\n" + "\\n\\n".join(
    f"## Part {i}\\n\\n" + f"Part {i} of the lock manual: battery code E-{i:02d}, reset. " * 80
    for i in range(6)
)
result = source_ingest_text(text=text, title="Redis batch", uri="kb://redis-batch")
print(json.dumps(result.source.pk))
"""


def test_a_qcluster_on_the_redis_broker_embeds_a_committed_batch_exactly_once(
    redis_url, start_cluster, vector_writes
):
    pipeline_resume()
    cluster = start_cluster(REDIS_URL=redis_url)
    # The ingest commits in another process with REDIS_URL: its on-commit run goes to Redis.
    source_id = manage_shell(INGEST, REDIS_URL=redis_url, KIOKU_EMBED_ON_WRITE="true")
    chunks = KnowledgeChunk.objects.filter(source_id=source_id)
    ids = set(chunks.values_list("pk", flat=True))
    assert len(ids) >= 6

    wait_until(
        lambda: set(chunks.values_list("embedding_status", flat=True)) == {"done"},
        timeout=60,
        message=f"the cluster did not embed the batch:\n{cluster.output()}",
    )
    runs = Task.objects.filter(func="knowledge.tasks.embedding_run")
    wait_until(runs.exists, timeout=30, message="the cluster saved no result")
    assert vector_writes() == dict.fromkeys(ids, 1)
    assert KnowledgeSource.objects.get(pk=source_id).status == "ready"
    # The task went through Redis, not the PostgreSQL queue.
    assert not OrmQ.objects.exists()
    assert redis.from_url(redis_url).llen("django_q:kioku:q") == 0
    assert all(run.success for run in runs)


WHOAMI_TWICE = """
import json
from django.test import Client
client = Client(SERVER_NAME="localhost")
print(json.dumps([
    client.get("/api/v1/whoami", headers={{"Authorization": "Bearer {key}"}}).status_code
    for _ in range(2)
]))
"""


def test_throttling_counts_one_key_across_two_processes(redis_caches, api, settings):
    settings.KIOKU_API_RATE = "3/min"
    other_process = manage_shell(
        WHOAMI_TWICE.format(key=api.key), REDIS_URL=redis_caches, KIOKU_API_RATE="3/min"
    )
    assert other_process == [200, 200]
    # This process's own count would allow three more; the shared one allows one.
    statuses = [api.get("/api/v1/whoami").status_code for _ in range(2)]
    assert statuses == [200, 429]


REVOKE = """
import json
from core.models import ApiKey
from core.services import api_key_revoke
api_key_revoke(api_key=ApiKey.objects.get(prefix="{prefix}"))
print(json.dumps(True))
"""


def test_a_key_revoked_in_another_process_stops_working_here_at_once(redis_caches, api, settings):
    settings.KIOKU_API_KEY_CACHE_SECONDS = 600  # without Redis, this process trusts it 10 min
    assert api.get("/api/v1/whoami").status_code == 200
    manage_shell(REVOKE.format(prefix=api.key[:12]), REDIS_URL=redis_caches)
    assert api.get("/api/v1/whoami").status_code == 401


def test_health_names_the_redis_broker_and_its_queue(redis_url, settings, monkeypatch):
    from django_q.conf import Conf

    from core.health import health_report

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    redis.from_url(redis_url).rpush("django_q:kioku:q", "a task")
    healthy, report = health_report()
    assert healthy, report
    assert report["queue"]["broker"] == "redis"
    assert report["queue"]["queued"] == 1


def test_health_reports_an_unreachable_redis_broker(settings, monkeypatch):
    from django_q.conf import Conf

    from core.health import health_report

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    healthy, report = health_report()
    assert not healthy
    assert report["queue"]["reachable"] is False
    assert report["queue"]["broker"] == "redis"
    assert any(reason.startswith("task queue unreachable") for reason in report["reasons"])


SETTINGS = """
import json
import config.settings as s
print(json.dumps([s.Q_CLUSTER.get("redis"), s.Q_CLUSTER.get("orm"),
                  sorted({c["BACKEND"].rsplit(".", 1)[1] for c in s.CACHES.values()})]))
"""


@pytest.mark.parametrize(
    ("redis_env", "expected"),
    [
        ("", [None, "default", ["DatabaseCache", "LocMemCache"]]),
        ("redis://127.0.0.1:1/0", ["redis://127.0.0.1:1/0", None, ["RedisCache"]]),
    ],
)
def test_redis_url_alone_moves_the_broker_and_both_caches(redis_env, expected):
    env = subprocess_env(REDIS_URL=redis_env)
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
