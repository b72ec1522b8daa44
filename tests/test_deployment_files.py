"""Static checks of the container files (Dockerfile, docker-compose.yml, .dockerignore).

No Docker engine is needed: the compose file is validated against the compose specification with
check-jsonschema (its schema is vendored, so this works offline), both files are parsed and their
wiring is checked against the code (settings, WSGI module, /healthz, files that are copied).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

APP_SERVICES = ("web", "worker", "migrate")
HEALTHY = {"condition": "service_healthy"}
MIGRATED = {"condition": "service_completed_successfully"}


# --- helpers --------------------------------------------------------------------------------


def load_yaml(text: str):
    """Parse YAML safely with PyYAML, or with ruamel.yaml (check-jsonschema's own parser) when
    PyYAML is not installed."""
    try:
        import yaml
    except ImportError:
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=True).load(text)
    return yaml.safe_load(text)


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """Compose-style variable interpolation (`${X}`, `${X:-default}`, `${X-default}`, `$$`),
    enough to see what a value becomes when the variables are unset or set."""
    environ = environ or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = environ.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return arg if current is None else current
        if op in {":+", "+"}:
            return arg if current else ""
        if op in {":?", "?"} and not current:
            raise ValueError(f"{name} is required: {arg}")
        return current or ""

    return _INTERPOLATION.sub(replace, value)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    arguments: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of CMD/ENTRYPOINT/RUN/HEALTHCHECK CMD, or None for shell form."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            assert text.split(maxsplit=1)[0].upper() == "CMD", f"unexpected HEALTHCHECK {text!r}"
            text = text.split(maxsplit=1)[1]
        if not text.lstrip().startswith("["):
            return None
        return json.loads(text)

    def words(self) -> list[str]:
        form = self.exec_form() if self.keyword in {"CMD", "ENTRYPOINT", "RUN"} else None
        return form if form is not None else shlex.split(self.arguments)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: joins lines continued with a trailing backslash,
    drops comment lines (also inside a continuation, as Docker does) and leading --flags."""
    instructions: list[Instruction] = []
    pending = ""
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, rest = logical.partition(" ")
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        instructions.append(Instruction(keyword.upper(), tuple(flags), rest))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _ignore_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def is_dockerignored(relative_path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is excluded when it or one of its parent folders matches the last
    matching pattern, unless that pattern is a `!` exception."""
    parts = Path(relative_path).as_posix().strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_regex(pattern[1:] if negated else pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def command_words(service: dict) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def build_of(service: dict) -> tuple[Path, str]:
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    return (ROOT / build.get("context", ".")).resolve(), build.get("dockerfile", "Dockerfile")


def healthcheck_words(healthcheck: dict) -> list[str]:
    test = healthcheck["test"]
    return shlex.split(test) if isinstance(test, str) else list(test)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def index_of(instructions: list[Instruction], predicate) -> int:
    for index, instruction in enumerate(instructions):
        if predicate(instruction):
            return index
    raise AssertionError("no matching Dockerfile instruction")


# --- docker-compose.yml ---------------------------------------------------------------------


def run_compose_spec_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_compose_file_matches_the_compose_spec():
    result = run_compose_spec_check(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_a_misspelt_service_key(compose, tmp_path):
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["restrat"] = "unless-stopped"
    path = tmp_path / "docker-compose.json"  # JSON is YAML, and needs no YAML writer
    path.write_text(json.dumps(broken))
    result = run_compose_spec_check(path)
    assert result.returncode != 0
    assert "restrat" in result.stdout + result.stderr


def test_compose_file_has_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_database_is_postgresql_17_with_pgvector(services):
    image = services["db"]["image"]
    assert image.startswith("pgvector/pgvector:")
    assert re.fullmatch(r"pg17(\b.*)?", image.split(":", 1)[1]), image


def test_database_has_a_pg_isready_healthcheck(services):
    healthcheck = services["db"]["healthcheck"]
    assert not healthcheck.get("disable")
    words = healthcheck_words(healthcheck)
    assert words[0] in {"CMD", "CMD-SHELL"}
    assert "pg_isready" in " ".join(words[1:])


def test_database_keeps_its_data_in_a_named_volume(compose, services):
    mounts = {}
    for volume in services["db"]["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        mounts[target] = source
    source = mounts.get("/var/lib/postgresql/data")
    assert source, f"no volume on PostgreSQL's data folder: {mounts}"
    assert source in (compose.get("volumes") or {}), f"{source!r} is not a declared named volume"


def test_web_worker_and_migrate_build_from_the_same_dockerfile(services):
    builds = {name: build_of(services[name]) for name in APP_SERVICES}
    assert len(set(builds.values())) == 1, builds
    context, dockerfile = builds["web"]
    assert context == ROOT
    assert (context / dockerfile).resolve() == DOCKERFILE


def test_web_runs_gunicorn_with_the_wsgi_application_on_port_8000(services):
    web = services["web"]
    words = command_words(web)
    assert words[0] == "gunicorn"
    assert "config.wsgi:application" in words
    assert words[words.index("--bind") + 1] == "0.0.0.0:8000"
    assert "8000:8000" in [str(port) for port in web["ports"]]


def test_web_command_is_the_images_default_command(services, instructions):
    # Spelled out in the compose file for readability; the two must not drift apart.
    (cmd,) = only(instructions, "CMD")
    assert command_words(services["web"]) == cmd.exec_form()


def test_worker_runs_the_django_q_cluster(services):
    assert command_words(services["worker"]) == ["python", "manage.py", "qcluster"]


def test_migrations_run_once_before_web_and_worker_start(services):
    migrate = services["migrate"]
    words = command_words(migrate)
    assert words[:3] == ["python", "manage.py", "migrate"]
    assert "--noinput" in words
    assert migrate["depends_on"]["db"] == HEALTHY
    assert str(migrate.get("restart", "no")) == "no", "a one-shot service must not be restarted"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == MIGRATED, name


def test_web_and_worker_wait_for_a_healthy_database(services):
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["db"] == HEALTHY, name


def test_database_url_points_at_the_db_service(services):
    db_env = services["db"]["environment"]
    for name in APP_SERVICES:
        url = urlsplit(interpolate(services[name]["environment"]["DATABASE_URL"]))
        assert url.scheme in {"postgres", "postgresql"}, name
        assert url.hostname == "db", name
        assert (url.port or 5432) == 5432, name
        assert url.username == db_env["POSTGRES_USER"], name
        assert url.password == db_env["POSTGRES_PASSWORD"], name
        assert url.path.lstrip("/") == db_env["POSTGRES_DB"], name


def test_secret_key_is_passed_through_from_the_environment(services):
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY"), name
        assert interpolate(environment["SECRET_KEY"], {"SECRET_KEY": "s3cret"}) == "s3cret"


def test_compose_refuses_to_start_without_a_secret_key(services):
    # A default here would be a key published with the repository (it used to be "change-me").
    for name in APP_SERVICES:
        secret_key = services[name]["environment"]["SECRET_KEY"]
        for environ in ({}, {"SECRET_KEY": ""}):
            with pytest.raises(ValueError, match="SECRET_KEY is required: set SECRET_KEY"):
                interpolate(secret_key, environ)


def test_openai_key_is_passed_through_and_optional(services):
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert interpolate(environment["OPENAI_API_KEY"], {"OPENAI_API_KEY": "sk-x"}) == "sk-x"
        assert interpolate(environment["OPENAI_API_KEY"]) == "", "no key means offline mode"


def test_every_app_environment_variable_is_read_by_the_settings(services):
    settings_source = (ROOT / "config" / "settings.py").read_text()
    read_by_settings = set(re.findall(r"env\w*\(\s*\"([A-Z0-9_]+)\"", settings_source))
    for name in APP_SERVICES:
        unknown = set(services[name]["environment"]) - read_by_settings
        assert not unknown, f"{name}: settings never read {sorted(unknown)}"


def test_web_healthcheck_calls_healthz_on_an_allowed_host(services):
    web = services["web"]
    words = healthcheck_words(web["healthcheck"])
    urls = re.findall(r"https?://[^'\" ]+", " ".join(words))
    assert urls, words
    url = urlsplit(urls[0])
    assert url.path == "/healthz"
    assert url.port == 8000
    allowed = interpolate(web["environment"]["ALLOWED_HOSTS"]).split(",")
    assert url.hostname in allowed
    assert {"localhost", "127.0.0.1"} <= set(allowed)


def test_worker_and_migrate_do_not_inherit_the_web_healthcheck(services):
    # The image's HEALTHCHECK probes gunicorn on :8000, which only the web service runs.
    for name in ("worker", "migrate"):
        assert services[name].get("healthcheck", {}).get("disable") is True, name


def test_long_running_services_restart_automatically(services):
    for name in ("db", "web", "worker"):
        assert services[name].get("restart") in {"always", "unless-stopped", "on-failure"}, name


# --- the `scale` profile (streaming replica, Redis, PgBouncer) --------------------------------

SCALE_SERVICES = ("db-replica", "redis", "pgbouncer")
SCALE_ENV = ROOT / "deploy" / "scale.env"


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def app_environment(services: dict, name: str, environ: dict[str, str]) -> dict[str, str]:
    """What a service's environment becomes with `environ` (e.g. deploy/scale.env) set."""
    environ = {"SECRET_KEY": "s3cret", **environ}
    return {
        key: interpolate(str(value), environ)
        for key, value in services[name]["environment"].items()
    }


def mounted_file(service: dict, target: str) -> Path:
    for volume in service["volumes"]:
        source, mount_target = volume.split(":")[:2]
        if mount_target == target:
            return (ROOT / source).resolve()
    raise AssertionError(f"nothing mounted at {target}: {service['volumes']}")


def test_scale_services_run_only_in_the_scale_profile(services):
    for name in SCALE_SERVICES:
        assert services[name]["profiles"] == ["scale"], name
    for name in ("db", *APP_SERVICES):
        assert "profiles" not in services[name], f"{name} must run without a profile"


def test_scale_images_are_pinned_to_a_version(services):
    for name in SCALE_SERVICES:
        image, _, tag = services[name]["image"].partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), services[name]["image"]
    assert services["db-replica"]["image"] == services["db"]["image"], "same PostgreSQL as db"


def test_scale_services_have_healthchecks_and_restart(services):
    probes = {"db-replica": "pg_isready", "pgbouncer": "pg_isready", "redis": "redis-cli ping"}
    for name, probe in probes.items():
        healthcheck = services[name]["healthcheck"]
        assert not healthcheck.get("disable"), name
        words = healthcheck_words(healthcheck)
        assert words[0] in {"CMD", "CMD-SHELL"} and probe in " ".join(words[1:]), name
        assert services[name].get("restart") == "unless-stopped", name


def test_the_replica_streams_from_db_as_a_replication_user(services):
    db, replica = services["db"], services["db-replica"]
    init = mounted_file(db, "/docker-entrypoint-initdb.d/10-replication.sh").read_text()
    start_script = mounted_file(replica, "/usr/local/bin/kioku-replica-start.sh")
    assert command_words(replica)[-1] == "/usr/local/bin/kioku-replica-start.sh"
    start = start_script.read_text()
    user = replica["environment"]["REPLICATION_USER"]
    # The primary makes the role and lets it replicate; the replica logs in with the same password.
    assert f"CREATE ROLE {user} WITH REPLICATION LOGIN" in init
    assert f"host replication {user} all scram-sha-256" in init
    assert (
        replica["environment"]["REPLICATION_PASSWORD"] == db["environment"]["REPLICATION_PASSWORD"]
    )
    assert replica["environment"]["PRIMARY_HOST"] == "db"
    assert "pg_basebackup" in start and "--write-recovery-conf" in start
    assert "hot_standby=on" in start
    assert "wal_level=replica" in command_words(db)
    assert replica["depends_on"]["db"] == HEALTHY
    for volume in ("pgdata", "replicadata"):
        assert volume in compose_volumes(services), volume


def compose_volumes(services: dict) -> set[str]:
    return {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }


def test_pgbouncer_pools_transactions_in_front_of_db(services):
    environment = services["pgbouncer"]["environment"]
    db = services["db"]["environment"]
    assert environment["POOL_MODE"] == "transaction"
    assert environment["DB_HOST"] == "db"
    assert (environment["DB_USER"], environment["DB_PASSWORD"]) == (
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
    )
    assert services["pgbouncer"]["depends_on"]["db"] == HEALTHY


def test_web_and_worker_wait_for_redis_and_pgbouncer_only_when_they_run(services):
    for name in ("web", "worker"):
        for dependency in ("redis", "pgbouncer"):
            assert services[name]["depends_on"][dependency] == {**HEALTHY, "required": False}


def test_scale_env_wires_the_app_to_the_scale_services(services):
    scale = env_file(SCALE_ENV)
    assert scale["COMPOSE_PROFILES"] == "scale"
    for name in ("web", "worker"):
        environment = app_environment(services, name, scale)
        database = urlsplit(environment["DATABASE_URL"])
        assert database.hostname == "pgbouncer" and database.port == 5432, name
        assert environment["KIOKU_DB_TRANSACTION_POOLER"] == "true", name
        assert urlsplit(environment["REDIS_URL"]).hostname == "redis", name
        replicas = [urlsplit(url) for url in environment["DATABASE_REPLICA_URLS"].split(",")]
        assert [url.hostname for url in replicas] == ["db-replica"], name
        assert database.path == replicas[0].path == "/kioku", name
    # Migrations go straight to the primary, never through the pooler.
    migrate = app_environment(services, "migrate", scale)
    assert urlsplit(migrate["DATABASE_URL"]).hostname == "db"
    assert migrate["KIOKU_DB_TRANSACTION_POOLER"] == "false"


def test_without_scale_env_the_app_uses_none_of_the_scale_services(services):
    for name in APP_SERVICES:
        environment = app_environment(services, name, {})
        assert urlsplit(environment["DATABASE_URL"]).hostname == "db", name
        assert environment["KIOKU_DB_TRANSACTION_POOLER"] == "false", name
        assert environment["REDIS_URL"] == environment["DATABASE_REPLICA_URLS"] == "", name


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_parser_joins_continued_lines_and_skips_comments():
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM python:3.11-slim\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n"
        "    # a comment inside the continuation\n"
        "    echo one \\\n    && echo two\n"
        'CMD ["gunicorn", "x:y"]\n'
    )
    assert [i.keyword for i in parsed] == ["FROM", "RUN", "CMD"]
    assert parsed[1].flags == ("--mount=type=cache,target=/root/.cache",)
    assert parsed[1].arguments == "echo one && echo two"
    assert parsed[2].exec_form() == ["gunicorn", "x:y"]


def test_dockerfile_builds_on_python_3_11(instructions):
    images = [instruction.words()[0] for instruction in only(instructions, "FROM")]
    assert images, "no FROM"
    assert all(image.startswith("python:3.11") for image in images), images


def test_dockerfile_installs_a_pinned_uv_from_pypi(instructions):
    runs = [i.arguments for i in only(instructions, "RUN")]
    assert any(re.search(r"\bpip install\b.*\buv==\d+\.\d+\.\d+\b", run) for run in runs), runs


def test_dockerfile_installs_locked_dependencies_before_copying_the_app(instructions):
    lock_copy = index_of(
        instructions,
        lambda i: i.keyword == "COPY" and {"pyproject.toml", "uv.lock"} <= set(i.words()[:-1]),
    )
    sync = index_of(instructions, lambda i: i.keyword == "RUN" and "uv sync" in i.arguments)
    app_copy = index_of(instructions, lambda i: i.keyword == "COPY" and i.words()[0] == ".")
    assert lock_copy < sync < app_copy
    sync_words = instructions[sync].words()
    assert {"--frozen", "--no-dev", "--no-install-project"} <= set(sync_words)


def test_dockerfile_collects_static_files_at_build_time(instructions):
    collect = index_of(
        instructions, lambda i: i.keyword == "RUN" and "collectstatic --noinput" in i.arguments
    )
    app_copy = index_of(instructions, lambda i: i.keyword == "COPY" and i.words()[0] == ".")
    assert app_copy < collect


def test_dockerfile_runs_as_a_non_root_user(instructions):
    users = only(instructions, "USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].arguments.split(":")[0]
    assert user not in {"root", "0"}
    last_user = max(
        i for i, instruction in enumerate(instructions) if instruction.keyword == "USER"
    )
    assert last_user < index_of(instructions, lambda i: i.keyword == "CMD")


def test_dockerfile_sets_the_runtime_environment(instructions):
    environment = {}
    for instruction in only(instructions, "ENV"):
        for word in shlex.split(instruction.arguments):
            key, _, value = word.partition("=")
            environment[key] = value
    assert environment["PATH"].split(":")[0] == "/app/.venv/bin"
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert environment["DJANGO_SETTINGS_MODULE"] == "config.settings"
    assert (ROOT / "config" / "settings.py").is_file()


def test_dockerfile_bakes_no_secret_key_into_the_image(instructions):
    # A key in an ENV instruction is in every copy of the image; it must come at run time. The
    # collectstatic step passes its own on the command line, which the image does not keep.
    for instruction in only(instructions, "ENV") + only(instructions, "ARG"):
        assert "SECRET_KEY" not in instruction.arguments, instruction


def test_dockerfile_has_a_healthcheck_on_healthz(instructions):
    healthchecks = only(instructions, "HEALTHCHECK")
    assert len(healthchecks) == 1
    command = healthchecks[0].exec_form()
    assert command and command[0] == "python", command
    assert "urllib.request" in command[-1]
    assert "http://127.0.0.1:8000/healthz" in command[-1]
    compile(command[-1], "<healthcheck>", "exec")  # the -c snippet is valid Python


def test_dockerfile_default_command_runs_gunicorn_with_the_wsgi_application(instructions):
    cmds = only(instructions, "CMD")
    assert len(cmds) == 1
    command = cmds[0].exec_form()
    assert command is not None, "CMD should use the exec form so gunicorn gets the signals"
    assert command[0] == "gunicorn"
    assert "config.wsgi:application" in command
    assert command[command.index("--bind") + 1] == "0.0.0.0:8000"
    assert "application =" in (ROOT / "config" / "wsgi.py").read_text()
    exposed = [word for expose in only(instructions, "EXPOSE") for word in expose.words()]
    assert "8000" in exposed


def test_every_file_the_dockerfile_copies_exists_and_is_not_dockerignored(instructions):
    patterns = dockerignore_patterns()
    copies = only(instructions, "COPY") + only(instructions, "ADD")
    assert copies
    for instruction in copies:
        if any(flag.startswith("--from") for flag in instruction.flags):
            continue  # copies from another stage or image, not from the build context
        for source in instruction.words()[:-1]:
            matches = list(ROOT.glob(source)) if source != "." else [ROOT]
            assert matches, f"COPY source {source!r} does not exist"
            if source != ".":
                assert not is_dockerignored(source, patterns), f"{source!r} is in .dockerignore"


def test_dockerignore_keeps_the_files_the_app_needs():
    patterns = dockerignore_patterns()
    needed = [
        "pyproject.toml",
        "uv.lock",
        "manage.py",
        "config/settings.py",
        "config/wsgi.py",
        "core/views.py",
        "static/css",
        "templates/base.html",
    ]
    ignored = [path for path in needed if is_dockerignored(path, patterns)]
    assert not ignored


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    patterns = dockerignore_patterns()
    for path in [
        ".venv/bin/python",
        ".data/postgres/PG_VERSION",
        ".git/HEAD",
        ".env",
        "core/__pycache__/views.cpython-311.pyc",
        "__pycache__/x.pyc",
        ".pytest_cache/v",
        "test-artifacts/trace.zip",
        "staticfiles/admin/css/base.css",
    ]:
        assert is_dockerignored(path, patterns), path


def test_dockerignore_matcher_follows_dockers_rules():
    assert is_dockerignored("a/b/c.txt", ["a/"])
    assert is_dockerignored("x/y/__pycache__/z.pyc", ["**/__pycache__/"])
    assert not is_dockerignored("x/y.pyc", ["*.pyc"])  # `*` does not cross folders
    assert not is_dockerignored("keep.md", ["*.md", "!keep.md"])


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
