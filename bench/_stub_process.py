"""The OpenAI-compatible stub in a process of its own, so its CPU work (building and encoding
vectors) does not compete for the benchmark's GIL, as a real remote API would not."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.openai_stub import count_tokens

ROOT = Path(__file__).resolve().parent.parent


class RemoteStub:
    api_key = "test-key"
    count_tokens = staticmethod(count_tokens)

    def __init__(self, *, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "support.openai_stub", "--latency", str(latency)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        self.root = self.base_url.removesuffix("/v1")

    def configure(self, **settings) -> None:
        request = urllib.request.Request(
            f"{self.root}/_stub/config",
            data=json.dumps(settings).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.root}/_stub/stats", timeout=30).read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
