import base64
import hashlib
import hmac
import json

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


def text_event(
    text: str,
    *,
    event_id: str = "01JTEXT000000000000000001",
    user: str = "U1234567890abcdef",
    message_id: str = "555001",
) -> dict:
    return {
        "type": "message",
        "mode": "active",
        "timestamp": 1764892800000,
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
        "replyToken": f"reply-{event_id}",
        "message": {"id": message_id, "type": "text", "quoteToken": "q", "text": text},
    }


def webhook_body(*events: dict) -> bytes:
    return json.dumps({"destination": "Ubot", "events": list(events)}, ensure_ascii=False).encode()
