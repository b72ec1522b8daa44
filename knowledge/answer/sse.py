"""Server-sent events for answers being written: used by the streaming API and the Ask page."""

import json
from collections.abc import Iterable

from django.http import StreamingHttpResponse

from knowledge.answer.base import AskEvent
from knowledge.models import chunk_url


def sse_encode(event: AskEvent) -> bytes:
    data = event.data
    if event.kind == "sources":
        # Links are the web layer's: each cited passage gets the URL of the page showing it.
        data = {
            **data,
            "sources": [
                {**source, "chunk_url": chunk_url(source["chunk_id"])} for source in data["sources"]
            ],
        }
    payload = json.dumps(data, ensure_ascii=False, default=str)
    return f"event: {event.kind}\ndata: {payload}\n\n".encode()


def event_stream_response(events: Iterable[AskEvent]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        (sse_encode(event) for event in events), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response
