"""What the answer modules share: the error of an ask and the events of a streamed answer."""

from dataclasses import dataclass, field
from typing import Any

from core.errors import ApiError
from knowledge.errors import ALIASES


class AskError(ApiError):
    """A question that cannot be answered as asked, or a model that failed to answer."""

    def __init__(self, code: str, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("aliases", ALIASES.get(code, ()))
        super().__init__(code, message, **kwargs)


@dataclass
class AskEvent:
    """`sources` (the numbered passages), `delta` (answer text), `done` (the stored answer) or
    `error` (code and message)."""

    kind: str
    data: dict = field(default_factory=dict)
