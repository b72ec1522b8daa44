"""Server-sent events: the web layer adds the links of cited passages."""

import json

from knowledge.answer.base import AskEvent
from knowledge.answer.sse import sse_encode


def test_each_source_is_sent_with_the_url_of_its_chunk():
    event = AskEvent("sources", {"sources": [{"number": 1, "chunk_id": 42}], "mode": "offline"})
    encoded = sse_encode(event).decode()
    assert encoded.startswith("event: sources\ndata: ")
    data = json.loads(encoded.split("data: ", 1)[1])
    assert data["sources"] == [{"number": 1, "chunk_id": 42, "chunk_url": "/knowledge/chunks/42/"}]
    assert data["mode"] == "offline"


def test_other_events_are_sent_as_they_are():
    encoded = sse_encode(AskEvent("delta", {"text": "Replace the batteries [1]."})).decode()
    assert encoded == 'event: delta\ndata: {"text": "Replace the batteries [1]."}\n\n'
