"""Put chat sessions into the test database through the real append service."""

from datetime import timedelta

from django.utils import timezone

from sessions_app.demo import transcript_messages
from sessions_app.models import ChatSession
from sessions_app.services import session_append

LOCK_CHAT = [
    ("alice", False, "My KG-200 lock shows E-21 and the bolt will not retract."),
    ("kioku-bot", True, "E-21 means the motor drew too much current. Is the door misaligned?"),
    ("alice", False, "The door sags a little since the winter, the bolt rubs the strike plate."),
    ("kioku-bot", True, "Adjust the strike plate so the bolt moves freely, then test again."),
    ("alice", False, "Adjusted it and the lock works again, thanks!"),
]


def make_session(
    key: str = "discord:support:t-1",
    lines=LOCK_CHAT,
    *,
    idle_minutes: int | None = None,
    **kwargs,
) -> ChatSession:
    """A session holding `lines` (author, is_bot, text); `idle_minutes` backdates its activity."""
    messages = transcript_messages(lines, id_prefix=key)
    result = session_append(key=key, messages=messages, **kwargs)
    if idle_minutes is not None:
        ChatSession.objects.filter(pk=result.session_id).update(
            last_active_at=timezone.now() - timedelta(minutes=idle_minutes)
        )
    return ChatSession.objects.get(pk=result.session_id)
