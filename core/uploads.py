"""Uploads that stop at their limit: the file is checked as its bytes arrive, so a file over the
limit is refused (413, the limit's own code) without being read whole, and its temporary file is
removed at once."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse

SizeCheck = Callable[[int], None]


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler that calls `size_check(bytes so far)` on every chunk; the
    check raises the limit's ApiError, which the API answers."""

    def __init__(self, request: HttpRequest, size_check: SizeCheck) -> None:
        super().__init__(request)
        self.size_check = size_check

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        try:
            self.size_check(start + len(raw_data))
        except Exception:
            self.file.close()  # a NamedTemporaryFile: closing removes it
            raise
        return super().receive_data_chunk(raw_data, start)


def upload_limited(size_check: SizeCheck) -> Callable[[Callable], Callable]:
    """For `ninja.decorators.decorate_view`: the operation's file uploads stop at `size_check`
    (e.g. knowledge.ingest.ingestion.upload_size_check). Only installs the handler: the body
    is read later, after authentication."""

    def decorator(run: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(run)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request.upload_handlers = [LimitedUploadHandler(request, size_check)]
            return run(request, *args, **kwargs)

        return limited

    return decorator
