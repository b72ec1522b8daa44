"""Every error code the dispatch app answers with (stable strings clients may match on)."""

from core.errors import ApiError

DISPATCH_INVALID_CARD = "DISPATCH_INVALID_CARD"  # a missing or malformed card field (422)
DISPATCH_INVALID_TRANSITION = (
    "DISPATCH_INVALID_TRANSITION"  # a status change the flow forbids (409)
)
DISPATCH_CONFLICT = "DISPATCH_CONFLICT"  # the row changed since the version the caller read (409)
DISPATCH_RESOLUTION_REQUIRED = "DISPATCH_RESOLUTION_REQUIRED"  # resolving without saying how (422)
DISPATCH_NOT_FOUND = "DISPATCH_NOT_FOUND"  # no such card, order or technician (404)

DISPATCH_INVALID_TECHNICIAN = "DISPATCH_INVALID_TECHNICIAN"  # a bad technician field (422)
DISPATCH_INVALID_ORDER = "DISPATCH_INVALID_ORDER"  # a bad or missing order or line field (422)
DISPATCH_ORDER_FROZEN = "DISPATCH_ORDER_FROZEN"  # lines of a completed/cancelled order (409)
DISPATCH_ORDER_NOT_COMPLETED = "DISPATCH_ORDER_NOT_COMPLETED"  # settling/invoicing open work (409)
DISPATCH_ALREADY_SETTLED = "DISPATCH_ALREADY_SETTLED"  # the order was settled before (409)
DISPATCH_ALREADY_INVOICED = "DISPATCH_ALREADY_INVOICED"  # the order has its invoice (409)
DISPATCH_INVALID_SETTLEMENT = "DISPATCH_INVALID_SETTLEMENT"  # a share or fee out of range (422)
DISPATCH_INVALID_INVOICE = "DISPATCH_INVALID_INVOICE"  # no buyer, or nothing to invoice (422)
DISPATCH_INVALID_TAX_ID = "DISPATCH_INVALID_TAX_ID"  # a 統一編號 failing its checksum (422)

# An SOP draft asked of a card that is not a resolved case, or with fewer than two cases (409).
DISPATCH_SOP_NEEDS_CASES = "DISPATCH_SOP_NEEDS_CASES"
# Photos: 415 (Unsupported Media Type) because the content, not a field, is of the wrong kind.
DISPATCH_PHOTO_NOT_IMAGE = "DISPATCH_PHOTO_NOT_IMAGE"  # not JPEG, PNG, GIF or WebP bytes (415)
DISPATCH_PHOTO_TOO_LARGE = "DISPATCH_PHOTO_TOO_LARGE"  # over KIOKU_MAX_PHOTO_BYTES (413)
DISPATCH_PHOTO_EMPTY = "DISPATCH_PHOTO_EMPTY"  # a file of zero bytes (422)


class DispatchError(ApiError):
    """A dispatch request the caller must change, or that lost a race."""


def dispatch_not_found(what: str, pk: int, *, field: str = "id") -> DispatchError:
    """The one "no such row" error: `No service order #12.`, with the id under `field`."""
    return DispatchError(DISPATCH_NOT_FOUND, f"No {what} #{pk}.", status=404, details={field: pk})
