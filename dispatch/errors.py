"""Every error code the dispatch app answers with (stable strings clients may match on)."""

from core.errors import ApiError

DISPATCH_INVALID_CARD = "DISPATCH_INVALID_CARD"  # a missing or malformed card field (422)
DISPATCH_INVALID_TRANSITION = (
    "DISPATCH_INVALID_TRANSITION"  # a status change the flow forbids (409)
)
DISPATCH_CONFLICT = "DISPATCH_CONFLICT"  # the row changed since the version the caller read (409)
DISPATCH_RESOLUTION_REQUIRED = "DISPATCH_RESOLUTION_REQUIRED"  # resolving without saying how (422)
DISPATCH_NOT_FOUND = "DISPATCH_NOT_FOUND"  # no such card, order or technician (404)


class DispatchError(ApiError):
    """A dispatch request the caller must change, or that lost a race."""
