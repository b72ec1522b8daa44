"""A local stand-in for LINE's Messaging API (127.0.0.1 only), for tests: it records every request
and answers 200 `{}`, or the failures queued with `fail_next`. Point `LINE_API_BASE_URL` at
`stub.base_url`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LineStub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> LineStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with stub._lock:
                    stub.requests.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization", ""),
                            "body": json.loads(raw or b"null"),
                        }
                    )
                    status = stub._failures.pop(0) if stub._failures else 200
                    number = len(stub.requests)
                # What LINE answers a reply or push: one sent message per message sent.
                sent = (json.loads(raw or b"{}") or {}).get("messages", [])
                answer = (
                    {
                        "sentMessages": [
                            {"id": f"{number}{i}", "quoteToken": "q"} for i in range(len(sent))
                        ]
                    }
                    if status == 200
                    else {"message": "stub failure"}
                )
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def replies(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v2/bot/message/reply"]
