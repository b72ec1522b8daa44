import base64
import hashlib
import hmac
import json
import zlib

import pytest

from support.line_stub import LineStub

SECRET = "test-channel-secret"
TOKEN = "test-access-token"


@pytest.fixture(scope="session")
def _line_stub_server():
    stub = LineStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def line_stub(_line_stub_server, settings):
    """LINE on, its Messaging API answered by the local stub."""
    settings.LINE_CHANNEL_SECRET = SECRET
    settings.LINE_CHANNEL_ACCESS_TOKEN = TOKEN
    settings.LINE_API_BASE_URL = _line_stub_server.base_url
    settings.LINE_API_DATA_BASE_URL = _line_stub_server.base_url
    settings.KIOKU_LINE_REPLY_BACKOFF_SECONDS = 0
    _line_stub_server.reset()
    return _line_stub_server


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def line_event(kind: str, *, event_id: str, user: str = "U1234567890abcdef", **fields) -> dict:
    """A webhook event as LINE sends it; `fields` add the kind's own part (message, postback…)."""
    return {
        "type": kind,
        "mode": "active",
        "timestamp": 1764892800000,
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
        "replyToken": f"reply-{event_id}",
        **fields,
    }


def text_event(
    text: str,
    *,
    event_id: str = "01JTEXT000000000000000001",
    user: str = "U1234567890abcdef",
    message_id: str = "555001",
) -> dict:
    message = {"id": message_id, "type": "text", "quoteToken": "q", "text": text}
    return line_event("message", event_id=event_id, user=user, message=message)


def image_event(message_id: str, *, event_id: str, user: str = "U1234567890abcdef") -> dict:
    message = {
        "id": message_id,
        "type": "image",
        "quoteToken": f"q-{message_id}",
        "contentProvider": {"type": "line"},
    }
    return line_event("message", event_id=event_id, user=user, message=message)


def postback_event(data: str, *, event_id: str, user: str = "U1234567890abcdef") -> dict:
    return line_event("postback", event_id=event_id, user=user, postback={"data": data})


def webhook_body(*events: dict) -> bytes:
    return json.dumps({"destination": "Ubot", "events": list(events)}, ensure_ascii=False).encode()


class Chat:
    """One LINE user talking to the webhook: each call posts a signed event and returns the
    messages LINE delivered in reply ([] when Kioku did not reply or LINE refused it)."""

    def __init__(self, client, stub, user: str = "U1234567890abcdef") -> None:
        self.client, self.stub, self.user = client, stub, user
        self.sent = 0

    def _post(self, event: dict) -> list[dict]:
        before = len(self.stub.replies())
        body = webhook_body(event)
        response = self.client.post(
            "/integrations/line/webhook",
            data=body,
            content_type="application/json",
            HTTP_X_LINE_SIGNATURE=sign(body),
        )
        assert response.status_code == 200, response.content
        delivered = [r for r in self.stub.replies()[before:] if r["status"] == 200]
        return [message for reply in delivered for message in reply["body"]["messages"]]

    def _ids(self) -> tuple[str, str]:
        self.sent += 1
        user = zlib.crc32(self.user.encode())
        return f"01J{user:010d}{self.sent:010d}", f"{user}{self.sent:05d}"

    def say(self, text: str) -> list[dict]:
        event_id, message_id = self._ids()
        return self._post(
            text_event(text, event_id=event_id, user=self.user, message_id=message_id)
        )

    def photo(self, data: bytes | None, content_type: str = "image/png") -> list[dict]:
        """Send an image whose bytes LINE serves (None: LINE no longer has them)."""
        event_id, message_id = self._ids()
        if data is not None:
            self.stub.contents[message_id] = (data, content_type)
        return self._post(image_event(message_id, event_id=event_id, user=self.user))

    def tap(self, data: str) -> list[dict]:
        event_id, _ = self._ids()
        return self._post(postback_event(data, event_id=event_id, user=self.user))


def texts(messages: list[dict]) -> list[str]:
    return [message["text"] for message in messages]


def buttons(message: dict) -> list[str]:
    """The labels of a message's quick replies."""
    return [item["action"]["label"] for item in message.get("quickReply", {}).get("items", [])]


def postback_data(message: dict, label: str) -> str:
    [data] = [
        item["action"]["data"]
        for item in message["quickReply"]["items"]
        if item["action"]["label"] == label
    ]
    return data
