"""A local stand-in for LINE's Messaging API (127.0.0.1 only), for tests. Point both
`LINE_API_BASE_URL` and `LINE_API_DATA_BASE_URL` at `stub.base_url`.

- `POST /v2/bot/message/reply` and `/push`: recorded; answered like LINE (`sentMessages`), or with
  the failures queued by `fail_next`. A push whose `X-Line-Retry-Key` was accepted before gets
  409, as LINE answers.
- `GET /v2/bot/profile/{user id}`: the display name set in `profiles` (404 when unknown).
- `GET /v2/bot/message/{message id}/content`: the bytes set in `contents` (404 when unknown).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROFILE = re.compile(r"^/v2/bot/profile/([^/?]+)$")
CONTENT = re.compile(r"^/v2/bot/message/([^/?]+)/content$")


class LineStub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.profiles: dict[str, str] = {}  # user id -> display name
        self.contents: dict[str, tuple[bytes, str]] = {}  # message id -> (bytes, content type)
        self._failures: list[int] = []
        self._retry_keys: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> LineStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _json(self, status: int, answer: dict) -> None:
                self._answer(status, json.dumps(answer).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with stub._lock:
                    stub.requests.append(
                        {
                            "method": "GET",
                            "path": self.path,
                            "authorization": self.headers.get("Authorization", ""),
                        }
                    )
                    status = stub._failures.pop(0) if stub._failures else 200
                if status != 200:
                    return self._json(status, {"message": "stub failure"})
                if match := PROFILE.match(self.path):
                    name = stub.profiles.get(match[1])
                    if name is None:
                        return self._json(404, {"message": "Not found"})
                    return self._json(200, {"userId": match[1], "displayName": name})
                if match := CONTENT.match(self.path):
                    content = stub.contents.get(match[1])
                    if content is None:
                        return self._json(404, {"message": "Not found"})
                    return self._answer(200, content[0], content[1])
                return self._json(404, {"message": "Not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                retry_key = self.headers.get("X-Line-Retry-Key", "")
                with stub._lock:
                    status = stub._failures.pop(0) if stub._failures else 200
                    if status == 200 and retry_key:
                        if retry_key in stub._retry_keys:
                            status = 409
                        stub._retry_keys.add(retry_key)
                    stub.requests.append(
                        {
                            "method": "POST",
                            "path": self.path,
                            "status": status,
                            "authorization": self.headers.get("Authorization", ""),
                            "retry_key": retry_key,
                            "body": json.loads(raw or b"null"),
                        }
                    )
                    number = len(stub.requests)
                if status != 200:
                    return self._json(status, {"message": "stub failure"})
                # What LINE answers a reply or push: one sent message per message sent.
                sent = (json.loads(raw or b"{}") or {}).get("messages", [])
                self._json(
                    200,
                    {
                        "sentMessages": [
                            {"id": f"{number}{i}", "quoteToken": "q"} for i in range(len(sent))
                        ]
                    },
                )

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
            self.profiles.clear()
            self.contents.clear()
            self._failures.clear()
            self._retry_keys.clear()

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next `count` requests (any route) with `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    def replies(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v2/bot/message/reply"]

    def pushes(self) -> list[dict[str, Any]]:
        """Pushes LINE delivered (not those it refused, nor a repeated retry key: 409)."""
        return [
            r for r in self.requests if r["path"] == "/v2/bot/message/push" and r["status"] == 200
        ]

    def sent_texts(self) -> list[str]:
        """Every text message replied or pushed, in order."""
        return [
            message["text"]
            for request in self.requests
            if request["method"] == "POST"
            for message in request["body"]["messages"]
            if message["type"] == "text"
        ]
