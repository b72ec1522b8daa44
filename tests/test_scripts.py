"""The README's two commands hand their arguments to the right program: `uv sync` gets only its
own options, pytest and the run command get the rest. Run with a stand-in `uv` that records
each call (nothing is installed or started)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorded_uv(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `uv` appends its arguments to a log and succeeds."""
    log = tmp_path / "uv.log"
    fake = tmp_path / "bin" / "uv"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env["PATH"] = f"{fake.parent}:{env['PATH']}"
    return env, log


def run_script(name: str, args: list[str], env: dict[str, str]) -> None:
    subprocess.run(
        [shutil.which("bash"), str(ROOT / "scripts" / name), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_the_test_command_gives_its_arguments_to_pytest_not_to_uv_sync(recorded_uv):
    env, log = recorded_uv
    run_script("test", ["tests/core", "-x"], env)
    calls = log.read_text().splitlines()
    assert calls[0] == "sync --frozen"
    assert "run --no-sync pytest tests/core -x" in calls


def test_the_run_command_gives_its_arguments_to_the_server(recorded_uv):
    env, log = recorded_uv
    run_script("run", ["--bind", "127.0.0.1:9000", "--no-worker"], env)
    calls = log.read_text().splitlines()
    assert calls[0] == "sync --frozen --no-dev --inexact"
    assert calls[-1] == "run --no-sync python manage.py kioku_run --bind 127.0.0.1:9000 --no-worker"
