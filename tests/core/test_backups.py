"""Backups on the real embedded PostgreSQL: pg_dump into the backup folder, pg_restore into a new,
empty database on the same server, retention, the schedule, and what a failed dump leaves."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django_q.models import Schedule

from core.backups import BackupError, backup_create, backups_list, backups_prune
from core.errors import ErrorCode
from core.schedules import BACKUP_SCHEDULE_NAME, schedules_sync
from dispatch.models import OrderEvent, ProblemCard, ServiceOrder
from knowledge.models import KnowledgeChunk, KnowledgeSource
from knowledge.queries import index_status
from knowledge.search.service import chunk_search
from sessions_app.models import ChatSession, Message
from tests.dispatch.factories import make_card, make_order
from tests.knowledge.factories import BATTERY, E21, JA, ZH, make_source
from tests.sessions_app.factories import make_session

QUERIES = ("E-21 motor overcurrent strike plate", "電池沒電怎麼辦", "replace AA batteries")


@pytest.fixture
def backup_dir(settings, tmp_path: Path) -> Path:
    settings.KIOKU_BACKUP_DIR = str(tmp_path / "backups")
    return tmp_path / "backups"


@pytest.fixture
def restored_database(transactional_db) -> Iterator[str]:
    """A new, empty database on the same server as the test database; dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def connected_as(**changes: str) -> Iterator[None]:
    """The default connection, reopened with `changes` (NAME: another database; USER: another
    role) for the block: the product's own code then reads that database."""
    wrapper = connections["default"]
    saved = {key: wrapper.settings_dict[key] for key in changes}
    wrapper.close()
    wrapper.settings_dict.update(changes)
    try:
        yield
    finally:
        wrapper.close()
        wrapper.settings_dict.update(saved)


def vector_digest(model: type) -> str:
    """One digest of every vector of `model`'s table, in id order: equal only if each is."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md5(string_agg(coalesce(embedding::text, '-'), ',' ORDER BY id))"
            f" FROM {model._meta.db_table}"
        )
        return cursor.fetchone()[0]


def snapshot() -> dict:
    """What a restore must give back: the rows of each kind, the vectors, and search's answers."""
    status = index_status()
    with connection.cursor() as cursor:
        # pgvector and pg_trgm come back with the dump, pg_stat_statements from the restore.
        cursor.execute("SELECT array_agg(extname ORDER BY extname) FROM pg_extension")
        extensions = cursor.fetchone()[0]
    return {
        "extensions": extensions,
        "sources": KnowledgeSource.objects.count(),
        "chunks": KnowledgeChunk.objects.count(),
        "chunks_embedded": status["chunks"]["enabled_embedded"],
        "sessions": ChatSession.objects.count(),
        "messages": Message.objects.count(),
        "vectors": vector_digest(KnowledgeChunk),
        "cards": ProblemCard.objects.count(),
        "cards_embedded": ProblemCard.objects.filter(embedding__isnull=False).count(),
        "card_vectors": vector_digest(ProblemCard),
        "orders": ServiceOrder.objects.count(),
        "order_events": OrderEvent.objects.count(),
        "search": {
            (query, mode): [
                (hit.chunk_id, round(hit.score, 6))
                for hit in chunk_search(query, mode=mode, top_k=5).hits
            ]
            for query in QUERIES
            for mode in ("vector", "hybrid")
        },
    }


@pytest.mark.django_db(transaction=True)
def test_a_backup_restored_into_an_empty_database_gives_back_every_row_vector_and_search_hit(
    settings, backup_dir: Path, restored_database: str
) -> None:
    from knowledge.embed.pipeline import embedding_run, pipeline_resume

    settings.OPENAI_API_KEY = ""
    settings.KIOKU_SEARCH_SIDE_WORKERS = 0  # both legs on the connection the test points
    pipeline_resume()
    make_source(uri="kb://manual")
    for title, text in (("Battery", BATTERY), ("E-21", E21), ("ZH", ZH), ("JA", JA)):
        make_source(text=text, title=title, uri=f"kb://{title}")
    make_session()
    make_order(make_card())
    embedding_run()
    before = snapshot()
    assert before["chunks_embedded"] == before["chunks"] > 5
    assert before["messages"] and before["order_events"] and before["cards_embedded"] == 1
    assert all(before["search"].values())

    started = time.monotonic()
    call_command("kioku_backup")
    backed_up = time.monotonic() - started
    [backup] = backups_list()
    assert backup.path.stat().st_mode & 0o777 == 0o600  # customer data: the owner's only
    started = time.monotonic()
    call_command("kioku_restore", str(backup.path), "--database", restored_database)
    restored = time.monotonic() - started
    print(
        f"\nbackup {backup.size_bytes:,} bytes in {backed_up:.2f} s;"
        f" restore in {restored:.2f} s ({before['chunks']} chunks)"
    )

    with connected_as(NAME=restored_database):
        after = snapshot()
    assert after == before


@pytest.mark.django_db(transaction=True)
def test_restore_refuses_a_database_that_holds_tables(backup_dir: Path) -> None:
    call_command("kioku_backup")
    [backup] = backups_list()
    with pytest.raises(CommandError, match=f"{ErrorCode.BACKUP_TARGET_NOT_EMPTY}.*--clean"):
        call_command("kioku_restore", str(backup.path))


@pytest.mark.django_db(transaction=True)
def test_restore_into_a_database_that_does_not_exist_says_to_create_it(backup_dir: Path) -> None:
    call_command("kioku_backup")
    [backup] = backups_list()
    with pytest.raises(CommandError, match=f"{ErrorCode.RESTORE_FAILED}.*CREATE DATABASE"):
        call_command("kioku_restore", str(backup.path), "--database", "kioku_nowhere")
    with pytest.raises(CommandError, match=ErrorCode.BACKUP_NOT_FOUND):
        call_command("kioku_restore", str(backup_dir / "missing.dump"))


@pytest.mark.django_db(transaction=True)
def test_clean_restores_over_a_database_that_holds_the_same_tables(
    settings, backup_dir: Path, restored_database: str
) -> None:
    make_source(uri="kb://manual")
    call_command("kioku_backup")
    [backup] = backups_list()
    call_command("kioku_restore", str(backup.path), "--database", restored_database)
    with connected_as(NAME=restored_database):
        KnowledgeSource.objects.all().delete()
    call_command("kioku_restore", str(backup.path), "--database", restored_database, "--clean")
    with connected_as(NAME=restored_database):
        assert KnowledgeSource.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_only_the_newest_backups_are_kept(settings, backup_dir: Path) -> None:
    settings.KIOKU_BACKUP_KEEP = 2
    first = backup_create().backup
    second = backup_create().backup
    result = backup_create()
    assert result.pruned == [first.path]
    assert [backup.path for backup in backups_list()] == [second.path, result.backup.path]
    assert backups_prune(keep=1) == [second.path]
    assert not first.path.exists() and not second.path.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_dump_leaves_no_file_and_says_why(backup_dir: Path) -> None:
    kept = backup_create().backup
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS kioku_backup_nobody")
        cursor.execute("CREATE ROLE kioku_backup_nobody LOGIN")
    try:
        # A role that may connect but read no table: pg_dump starts, then fails on the first one.
        with connected_as(USER="kioku_backup_nobody"), pytest.raises(BackupError) as failure:
            backup_create()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP ROLE kioku_backup_nobody")
    assert failure.value.code == ErrorCode.BACKUP_FAILED
    assert "permission denied" in failure.value.message
    assert list(backup_dir.iterdir()) == [kept.path]
    assert backups_list() == [kept]


@pytest.mark.django_db(transaction=True)
def test_a_missing_pg_dump_is_named_and_nothing_is_written(settings, backup_dir: Path) -> None:
    settings.KIOKU_PG_BIN_DIR = str(backup_dir.parent / "no-postgres-here")
    with pytest.raises(CommandError, match=f"{ErrorCode.BACKUP_TOOL_MISSING}.*pg_dump"):
        call_command("kioku_backup")
    assert not backup_dir.exists() or not list(backup_dir.iterdir())


@pytest.mark.django_db
def test_the_backup_schedule_appears_and_disappears_with_its_setting(settings) -> None:
    schedules_sync()
    assert not Schedule.objects.filter(name=BACKUP_SCHEDULE_NAME).exists()
    settings.KIOKU_BACKUP_EVERY_HOURS = 24
    schedules_sync()
    schedule = Schedule.objects.get(name=BACKUP_SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes) == ("core.tasks.backup_create", 24 * 60)
    settings.KIOKU_BACKUP_EVERY_HOURS = 0
    schedules_sync()
    assert not Schedule.objects.filter(name=BACKUP_SCHEDULE_NAME).exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_task_backs_up_and_health_and_home_show_it(
    settings, backup_dir: Path, client, staff_user
) -> None:
    from core.tasks import backup_create as scheduled_backup

    settings.KIOKU_BACKUP_EVERY_HOURS = 24
    assert client.get("/healthz").json()["backups"]["overdue"] is True
    done = scheduled_backup()
    [backup] = backups_list()
    assert done["path"] == str(backup.path) and done["size_bytes"] == backup.size_bytes
    report = client.get("/healthz").json()["backups"]
    assert report["last_at"] == backup.created_at.isoformat()
    assert report["last_size_bytes"] == backup.size_bytes
    assert (report["count"], report["overdue"]) == (1, False)
    client.force_login(staff_user)
    html = client.get("/").content.decode()
    panel = html[html.index('id="panel-backups"') :]
    assert backup.created_at.strftime("%Y-%m-%d %H:%M") in panel
    assert "every 24 h" in panel


# --- With DATABASE_URL: the tools on PATH ---------------------------------------------------

EXTERNAL = {"ENGINE": "django.db.backends.postgresql"}  # what a DATABASE_URL configures


def server_major() -> int:
    from core.database import database_capabilities

    return database_capabilities(connection).postgres_major


@pytest.mark.django_db(transaction=True)
def test_an_external_server_is_dumped_with_the_pg_dump_on_path(
    backup_dir: Path, monkeypatch
) -> None:
    from config import embedded_db

    monkeypatch.setenv("PATH", str(embedded_db.bin_dir()))
    with connected_as(**EXTERNAL):
        backup = backup_create().backup
    assert backups_list() == [backup]


@pytest.mark.django_db(transaction=True)
def test_an_external_server_without_pg_dump_on_path_names_what_to_install(
    backup_dir: Path, monkeypatch, tmp_path: Path
) -> None:
    from config import embedded_db

    monkeypatch.setenv("PATH", str(tmp_path))
    with connected_as(**EXTERNAL), pytest.raises(BackupError) as failure:
        backup_create()
    assert failure.value.code == ErrorCode.BACKUP_TOOL_MISSING
    assert "No pg_dump on PATH" in failure.value.message
    assert f"postgresql-client-{server_major()}" in failure.value.message
    assert f"KIOKU_PG_BIN_DIR={embedded_db.bin_dir()}" in failure.value.message


@pytest.mark.django_db(transaction=True)
def test_a_pg_dump_older_than_the_server_is_refused_before_it_runs(
    backup_dir: Path, monkeypatch, tmp_path: Path
) -> None:
    import shutil

    from core.backups import tool_major

    older = shutil.which("pg_dump", path="/usr/lib/postgresql/15/bin:/usr/bin")
    if older is None or tool_major(Path(older)) >= server_major():
        pytest.skip(f"no pg_dump older than PostgreSQL {server_major()} on this machine")
    monkeypatch.setenv("PATH", str(Path(older).parent))
    with connected_as(**EXTERNAL), pytest.raises(BackupError) as failure:
        backup_create()
    assert failure.value.code == ErrorCode.BACKUP_TOOL_MISSING
    assert f"older than the server ({server_major()})" in failure.value.message
    assert not backup_dir.exists() or not list(backup_dir.iterdir())
