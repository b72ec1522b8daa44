from datetime import datetime

from ninja import Field, Schema
from pydantic import StrictBool

from core.pagination import Page, PageOut
from core.schemas import JsonDateTime, JsonInt
from sessions_app.models import ChatSession, SessionStatus


class MessageItemIn(Schema):
    # The services' rules (SESSION_EMPTY_MESSAGE, SESSION_MESSAGE_TOO_LONG at the default
    # KIOKU_SESSION_MAX_MESSAGE_CHARS, SESSION_INVALID_ROLE) stated in the schema; they keep
    # enforcing them with their own codes.
    content: str = Field(json_schema_extra={"pattern": r"\S", "maxLength": 32_000})
    role: str = Field(
        "user",
        description="user, assistant or system.",
        json_schema_extra={"enum": ["user", "assistant", "system"]},
    )
    author: str = Field("", max_length=200)
    is_bot: StrictBool = False
    external_id: str = Field(
        "", max_length=200, description="The platform's message id: a retry is stored once."
    )
    created_at: JsonDateTime | None = Field(None, description="When it was said (default: now).")


class AppendIn(Schema):
    messages: list[MessageItemIn] = Field(
        description="One or many messages, in order (at most KIOKU_SESSION_MAX_APPEND).",
        json_schema_extra={"minItems": 1, "maxItems": 500},
    )
    platform: str = Field("", max_length=50, description="Used when the session is created.")
    channel: str = Field("", max_length=200)
    thread: str = Field("", max_length=200)
    title: str = Field("", max_length=200)
    context: JsonInt | None = Field(
        None,
        ge=0,
        le=200,
        description="How many recent messages to return (default setting).",
    )


class MessageOut(Schema):
    id: int
    role: str
    author: str
    is_bot: bool
    content: str
    external_id: str
    created_at: datetime


class AppendOut(Schema):
    session_id: int
    key: str
    created: bool
    accepted: int
    duplicate_external_ids: list[str]
    version: int
    context: list[MessageOut]


class SessionOut(Schema):
    id: int
    key: str
    platform: str
    channel: str
    thread: str
    title: str
    participants: list[str]
    status: SessionStatus
    version: int
    message_count: int = 0
    last_active_at: datetime
    created_at: datetime
    archived_at: datetime | None
    archived_through_id: int
    archived_message_count: int
    archive_attempts: int
    skip_reason: str
    archive_note: str
    source_id: int | None
    duplicate_of_id: int | None


class SessionPage(PageOut):
    items: list[SessionOut]


class MessagePage(PageOut):
    items: list[MessageOut]


class SessionDetailOut(SessionOut):
    messages: MessagePage

    @staticmethod
    def resolve_messages(obj: ChatSession) -> Page:
        return obj.messages_page  # set by the endpoint: one page of messages


class ArchiveOut(Schema):
    session_id: int
    outcome: str
    messages: int
    chunks: int
    source_id: int | None
    reason: str
    attempts: int


class DeleteOut(Schema):
    deleted_messages: int
    deleted_sources: int
