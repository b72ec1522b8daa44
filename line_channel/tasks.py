"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from line_channel import services


def line_event_process(event_pk: int) -> str:
    return services.line_event_process(event_pk=event_pk).status


def line_reply_send(reply_id: int) -> str:
    return services.line_reply_send(reply_id=reply_id).status
