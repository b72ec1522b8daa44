"""Photos of problem cards: images only, their type read from the bytes, within a size limit,
stored through Django's default storage under a name Kioku makes up.

Photos are customer data: they are served only to logged-in users, by `dispatch.views.photo`,
never from a public URL (nothing serves MEDIA_URL)."""

import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from dispatch.errors import (
    DISPATCH_PHOTO_EMPTY,
    DISPATCH_PHOTO_NOT_IMAGE,
    DISPATCH_PHOTO_TOO_LARGE,
    DispatchError,
    dispatch_not_found,
)
from dispatch.models import ProblemCard, ProblemCardPhoto

# The image types accepted, by their magic numbers: (content type, file extension). SVG is left
# out on purpose: it is a document that can carry scripts, not a photo.
JPEG = ("image/jpeg", "jpg")
PNG = ("image/png", "png")
GIF = ("image/gif", "gif")
WEBP = ("image/webp", "webp")


def image_type(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) of JPEG, PNG, GIF or WebP bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def photo_size_check(size: int) -> None:
    """The one limit on a photo (KIOKU_MAX_PHOTO_BYTES). The API and the page call it with the
    upload's size before reading the file; the service calls it again on the bytes."""
    # Read at call time so the limit follows settings changes (and tests' `settings` fixture).
    limit = settings.KIOKU_MAX_PHOTO_BYTES
    if size > limit:
        raise DispatchError(
            DISPATCH_PHOTO_TOO_LARGE,
            f"Too large: {filesizeformat(size)} ({size:,} bytes). The photo limit is "
            f"{filesizeformat(limit)} ({limit:,} bytes, KIOKU_MAX_PHOTO_BYTES).",
            status=413,
            details={"size": size, "limit": limit},
        )


@transaction.atomic
def problem_card_photo_add(*, card_id: int, data: bytes, filename: str) -> ProblemCardPhoto:
    """Attach a photo to a card. The type is decided by the bytes alone, whatever the file's
    name or the client's content type say; the stored name is random with the extension of that
    type (the client's name and path are never used). Nothing is stored when it is refused."""
    photo_size_check(len(data))
    if not data:
        raise DispatchError(
            DISPATCH_PHOTO_EMPTY,
            f"{filename or 'The file'} is empty.",
            status=422,
            details={"size": 0},
        )
    detected = image_type(data)
    if detected is None:
        raise DispatchError(
            DISPATCH_PHOTO_NOT_IMAGE,
            f"{filename or 'The file'} is not a JPEG, PNG, GIF or WebP image.",
            status=415,
            details={"accepted": [JPEG[0], PNG[0], GIF[0], WEBP[0]]},
        )
    card = ProblemCard.objects.filter(pk=card_id).first()
    if card is None:
        raise dispatch_not_found("problem card", card_id, field="problem_card_id")
    content_type, extension = detected
    photo = ProblemCardPhoto(card=card, content_type=content_type, size=len(data))
    photo.image.save(f"{uuid.uuid4().hex}.{extension}", ContentFile(data), save=False)
    try:
        photo.save()
    except BaseException:
        photo.image.delete(save=False)  # no file without its row
        raise
    return photo
