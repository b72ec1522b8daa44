"""Demo LINE data for `./scripts/run`: a customer's fault report in Traditional Chinese, run
through the real event handling (intake, card, diagnosis, replies) as if LINE had delivered it.
The channel is off in the demo, so the replies are kept, not sent; the card waits on the
Dispatch board with the conversation beside it."""

from django.utils import timezone

from line_channel.models import LineEvent
from line_channel.services import line_event_process

DEMO_USER = "Udemo00000000000000000000000000001"
CONVERSATION = [
    "報修",
    "Kagiya",
    "KG-300",
    "外觀損壞",
    "沒有",
    "門鎖外殼被撞凹，按鍵有幾顆沒反應，晚上也沒辦法從外面上鎖。",
    "不用照片",
]


def demo_is_loaded() -> bool:
    return LineEvent.objects.exists()


def demo_load() -> str:
    sent_at = int(timezone.now().timestamp() * 1000)
    for number, text in enumerate(CONVERSATION, start=1):
        event_id = f"demo-{number:03d}"
        payload = {
            "type": "message",
            "mode": "active",
            "timestamp": sent_at + number * 20_000,
            "source": {"type": "user", "userId": DEMO_USER},
            "webhookEventId": event_id,
            "deliveryContext": {"isRedelivery": False},
            "replyToken": f"demo-reply-{number:03d}",
            "message": {"id": f"9{number:05d}", "type": "text", "quoteToken": "q", "text": text},
        }
        row = LineEvent.objects.create(
            webhook_event_id=event_id,
            kind="message",
            message_kind="text",
            user_id=DEMO_USER,
            payload=payload,
        )
        line_event_process(event_pk=row.pk)
    return f"1 LINE conversation ({len(CONVERSATION)} messages) that filed a problem card"
