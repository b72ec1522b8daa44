"""Real django-q2 clusters (`manage.py qcluster` subprocesses) on the test database, the local
OpenAI stub as their provider, and a log of every vector written, so a test can say "embedded
exactly once". Every process a test starts is killed in its finalizer."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from django.db import connection

from support.openai_stub import OpenAIStub

ROOT = Path(__file__).resolve().parents[2]
FAULT_SETTINGS = "tests.faults.settings"
# libpq names the connections of the processes these tests start, so a test can find (and
# kill) exactly those, not the test run's own side connections.
APPLICATION_NAME = "kioku-fault-test"


def wait_until(
    predicate: Callable[[], object], *, timeout: float, message: str, interval: float = 0.2
) -> object:
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout`
    seconds (a bound on a hung run, not a measured time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:.0f} s)")
        time.sleep(interval)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a process working on this test run's database: the same data folder
    (the shared embedded server and its secret key, which signs queued tasks) and the test
    database pytest-django created."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "KIOKU_TEST_DB_NAME"}}
    env.update(
        DJANGO_SETTINGS_MODULE=FAULT_SETTINGS,
        KIOKU_DB_NAME=connection.settings_dict["NAME"],
        KIOKU_EMBED_ON_WRITE="false",
        OPENAI_API_KEY="",
        PGAPPNAME=APPLICATION_NAME,
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@dataclass
class Cluster:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def worker_calling(self, port: int) -> psutil.Process | None:
        """The process of this cluster with a connection open to `port` (a worker in the middle
        of a provider call)."""
        for child in self.processes():
            try:
                if any(
                    c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                    for c in child.net_connections(kind="tcp")
                ):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def started_backends() -> int:
    """Connections to the test database of the processes these tests started."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def openai_stub(settings) -> Iterator[OpenAIStub]:
    """A stub of this test's own (not the session's): a request a killed worker left hanging
    in it must not answer, and be counted, during a later test."""
    stub = OpenAIStub().start()
    settings.OPENAI_API_KEY = stub.api_key
    settings.OPENAI_BASE_URL = stub.base_url
    yield stub
    stub.stop()


@pytest.fixture
def start_cluster(transactional_db, openai_stub, tmp_path) -> Iterator[Callable[..., Cluster]]:
    """Start `manage.py qcluster` processes on the test database with the stub as provider
    (and any further environment, e.g. REDIS_URL). At the end every process of every cluster is killed and their connections are gone."""
    clusters: list[Cluster] = []

    def start(*, timeout: int = 20, workers: int = 2, **extra_env: str) -> Cluster:
        log = tmp_path / f"qcluster-{len(clusters)}.log"
        env = subprocess_env(
            KIOKU_Q_TIMEOUT=str(timeout),
            KIOKU_Q_WORKERS=str(workers),
            OPENAI_API_KEY=openai_stub.api_key,
            OPENAI_BASE_URL=openai_stub.base_url,
            **extra_env,
        )
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        cluster = Cluster(process, log)
        clusters.append(cluster)
        wait_until(
            lambda: "running." in cluster.output() or process.poll() is not None,
            timeout=60,
            message="the cluster did not start",
        )
        assert process.poll() is None, cluster.output()
        return cluster

    yield start
    for cluster in clusters:
        cluster.kill()
    wait_until(
        lambda: started_backends() == 0, timeout=20, message="cluster connections outlived it"
    )


@pytest.fixture
def vector_writes(start_cluster) -> Iterator[Callable[[], dict[int, int]]]:
    """How many times each chunk got a vector: a trigger logs every write of `embedded_at`
    (both write paths set it), whichever process makes it. (Set up after `start_cluster`, so
    it is dropped once the clusters are gone.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE fault_vector_writes (row_id bigint NOT NULL);
            CREATE FUNCTION fault_vector_written() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO fault_vector_writes VALUES (NEW.id);
                RETURN NULL;
            END $$;
            CREATE TRIGGER fault_vector_written AFTER UPDATE OF embedded_at
                ON knowledge_knowledgechunk FOR EACH ROW
                WHEN (NEW.embedded_at IS NOT NULL
                      AND NEW.embedded_at IS DISTINCT FROM OLD.embedded_at)
                EXECUTE FUNCTION fault_vector_written();
            """
        )

    def counts() -> dict[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT row_id, count(*) FROM fault_vector_writes GROUP BY row_id")
            return dict(cursor.fetchall())

    yield counts
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER fault_vector_written ON knowledge_knowledgechunk;"
            "DROP FUNCTION fault_vector_written(); DROP TABLE fault_vector_writes;"
        )


@pytest.fixture
def broker_enqueue(transactional_db, monkeypatch) -> Callable[..., str]:
    """Queue a task on the real ORM broker (the rest of the suite runs tasks inline)."""
    from django_q.conf import Conf
    from django_q.tasks import async_task

    monkeypatch.setattr(Conf, "SYNC", False)

    def enqueue(func: str, *args: object) -> str:
        return async_task(func, *args)

    return enqueue


@pytest.fixture
def sweep_until(broker_enqueue) -> Callable[..., None]:
    """Stand in for the every-minute sweeper schedule at test speed: queue an embedding run
    whenever none is queued, until `predicate` holds."""
    from django_q.models import OrmQ

    def sweep(predicate: Callable[[], object], *, timeout: float, message: str) -> None:
        def swept() -> object:
            if predicate():
                return True
            if not OrmQ.objects.exists():
                broker_enqueue("knowledge.tasks.embedding_run")
            return False

        wait_until(swept, timeout=timeout, message=message, interval=0.5)

    return sweep
