"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from line_channel import messaging, services, sync


def line_event_process(event_pk: int) -> str:
    return services.line_event_process(event_pk=event_pk).status


def line_message_send(reply_id: int) -> str:
    return messaging.line_message_send(reply_id=reply_id).status


def line_sync_run(run_id: int) -> str:
    return sync.line_sync_run(run_id=run_id).status


def line_sync_check(run_id: int) -> str:
    return sync.line_sync_check(run_id=run_id).status
