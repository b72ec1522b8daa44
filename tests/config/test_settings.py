"""config/settings.py: which settings come from the environment (and the README says so), the
tuning block, and where SECRET_KEY comes from."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "config" / "settings.py"
README = ROOT / "README.md"
TUNING_MARKER = "# === Tuning settings"
DEPLOYMENT_DATABASE_URL = "postgres://kioku:kioku@127.0.0.1:9/kioku"


def environment_reads(path: Path) -> set[str]:
    """Names passed to the config.env helpers (`envstr("NAME", …)`, `envint(…)`, …) in `path`."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def readme_table(heading: str) -> set[str]:
    """The backquoted names in the first column of the first table under `heading`."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    rows = re.search(r"\n(\|.*\|\n)+", section).group(0).strip().splitlines()
    names: set[str] = set()
    for row in rows[2:]:  # after the header and its |---| line
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1]))
    return names


def tuning_block() -> list[ast.stmt]:
    """The top-level statements of settings.py below the tuning marker."""
    source = SETTINGS.read_text()
    lines = enumerate(source.splitlines(), 1)
    marker = next(number for number, line in lines if line.startswith(TUNING_MARKER))
    return [node for node in ast.parse(source).body if node.lineno > marker]


def assigned_names(statements: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in statements:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def test_readme_lists_exactly_the_environment_variables_the_config_reads():
    read = set().union(*(environment_reads(path) for path in (ROOT / "config").glob("*.py")))
    assert readme_table("### Environment variables") == read


def test_readme_lists_exactly_the_tuning_settings():
    assert readme_table("### Tuning settings") == assigned_names(tuning_block())


def test_tuning_settings_are_not_read_from_the_environment():
    block = tuning_block()
    assert block, f"no statements after {TUNING_MARKER!r} in settings.py"
    source = "\n".join(ast.unparse(node) for node in block)
    assert not re.search(r"\benv\w*\(|environ|getenv", source)
    assert not environment_reads(SETTINGS) & assigned_names(block)


def test_every_tuning_setting_has_its_own_comment():
    lines = SETTINGS.read_text().splitlines()
    for node in tuning_block():
        assert lines[node.lineno - 2].lstrip().startswith("#"), lines[node.lineno - 1]


def test_tuning_settings_keep_the_names_the_code_reads():
    from django.conf import settings

    assert settings.KIOKU_SEARCH_RRF_K == 60
    assert settings.KIOKU_SESSION_DUPLICATE_SIMILARITY == 0.9
    assert settings.KIOKU_INDEX_BUILD_WORKERS in range(1, 5)


def test_the_queue_retries_a_task_only_after_its_timeout():
    from django.conf import settings

    assert settings.Q_CLUSTER["retry"] == settings.Q_CLUSTER["timeout"] + 60


def settings_secret_key(environ: dict[str, str]) -> str:
    """SECRET_KEY as config/settings.py sets it for this environment (in a fresh process)."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.SECRET_KEY)"],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_local_instance_uses_the_key_kept_in_its_data_folder(tmp_path):
    key = settings_secret_key({"KIOKU_DATA_DIR": str(tmp_path)})
    assert key == (tmp_path / "secret_key").read_text().strip()
    assert settings_secret_key({"KIOKU_DATA_DIR": str(tmp_path)}) == key


def test_a_deployment_makes_no_key_of_its_own(tmp_path):
    environ = {"KIOKU_DATA_DIR": str(tmp_path), "DATABASE_URL": DEPLOYMENT_DATABASE_URL}
    assert settings_secret_key(environ) == ""
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("database_url", ["", DEPLOYMENT_DATABASE_URL])
def test_a_secret_key_from_the_environment_wins(tmp_path, database_url):
    environ = {"KIOKU_DATA_DIR": str(tmp_path), "SECRET_KEY": "from-the-environment"}
    if database_url:
        environ["DATABASE_URL"] = database_url
    assert settings_secret_key(environ) == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def settings_databases(environ: dict[str, str]) -> subprocess.CompletedProcess:
    """DATABASES as config/settings.py sets it for this environment (in a fresh process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "KIOKU_DB_"))}
    return subprocess.run(
        [sys.executable, "-c", "import json, config.settings as s; print(json.dumps(s.DATABASES))"],
        cwd=ROOT,
        env={**env, "SECRET_KEY": "x" * 50, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_replica_url_becomes_an_alias_connected_like_the_primary():
    import json

    result = settings_databases(
        {
            "DATABASE_URL": DEPLOYMENT_DATABASE_URL,
            "DATABASE_REPLICA_URLS": "postgres://kioku@10.0.0.2/kioku, postgres://kioku@10.0.0.3:6432/kioku?sslmode=require",
            "KIOKU_DB_POOL": "8",
        }
    )
    assert result.returncode == 0, result.stderr
    databases = json.loads(result.stdout)
    assert sorted(databases) == ["default", "replica1", "replica2"]
    second = databases["replica2"]
    assert (second["HOST"], second["PORT"], second["NAME"]) == ("10.0.0.3", "6432", "kioku")
    assert second["OPTIONS"]["sslmode"] == "require"
    for alias in ("replica1", "replica2"):
        assert databases[alias]["OPTIONS"]["pool"] == databases["default"]["OPTIONS"]["pool"]
        assert databases[alias]["TEST"] == {"MIRROR": "default"}


def test_without_replica_urls_there_is_only_the_primary():
    import json

    result = settings_databases({"DATABASE_URL": DEPLOYMENT_DATABASE_URL})
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == ["default"]


def test_a_replica_url_that_is_not_postgres_is_refused_by_name():
    result = settings_databases(
        {"DATABASE_URL": DEPLOYMENT_DATABASE_URL, "DATABASE_REPLICA_URLS": "mysql://h/kioku"}
    )
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URLS" in result.stderr
