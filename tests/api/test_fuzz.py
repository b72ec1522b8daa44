"""Schemathesis against the live /api/v1 schema: every operation, every default check (server
errors, status codes and responses the schema documents, schema-valid requests accepted and
invalid ones rejected, auth, stateful links), bounded in examples and time."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Left out, and why:
# - DELETE /api-keys/{key_id} revokes keys: the stateful phase links it to the fuzzing key itself.
# - POST /sources/web fetches the URL it is given: CI stays on loopback (tests/knowledge covers it
#   against a local server; the body rules it shares are checked by the other operations).
EXCLUDED = ("DELETE /api/v1/api-keys/{key_id}", "POST /api/v1/sources/web")


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_failure(live_server, make_api_key, settings, tmp_path):
    settings.KIOKU_API_RATE = "1000000/min"  # the fuzzer's thousands of requests use one key
    key = make_api_key("admin", name="fuzzer")
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{live_server.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        *(arg for name in EXCLUDED for arg in ("--exclude-name", name)),
        "--max-examples",
        os.environ.get("KIOKU_FUZZ_EXAMPLES", "10"),
        "--workers",
        "2",
        "--seed",
        os.environ.get("KIOKU_FUZZ_SEED", "1616"),
        # NUL and lone surrogates are refused by one rule at the edge (tests/api/test_edge.py),
        # which a JSON Schema cannot state for every string and key: not generated here.
        "--generation-allow-x00",
        "false",
        "--generation-codec",
        "utf-8",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # In tmp_path: schemathesis keeps a cache of crashes in its working directory.
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-5000:]
