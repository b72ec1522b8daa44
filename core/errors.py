"""One error shape for the whole API: HTTP status + {"code", "message", "details"}.

Each app's domain errors (IngestError, CurationError, WebFetchError, SearchError) subclass
`ApiError`, so services raise them, pages and commands show them, and the API handler in
`config/api.py` answers with this shape without a try/except per endpoint.
"""

from typing import Any


class ErrorCode:
    BAD_REQUEST = "BAD_REQUEST"
    INVALID_JSON = "INVALID_JSON"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    TEXT_INVALID_CHARACTER = "TEXT_INVALID_CHARACTER"  # NUL or a lone surrogate (core/edge.py)
    TEXT_INVALID_ENCODING = "TEXT_INVALID_ENCODING"  # a request body that is not UTF-8
    JSON_TOO_DEEP = "JSON_TOO_DEEP"  # JSON nested deeper than core.edge.JSON_MAX_DEPTH
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID_KEY = "AUTH_INVALID_KEY"
    AUTH_FORBIDDEN_SCOPE = "AUTH_FORBIDDEN_SCOPE"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # the database cannot be reached; retry later
    API_KEY_INVALID = "API_KEY_INVALID"  # a key the API was asked to create is not valid
    THRESHOLD_INVALID = "THRESHOLD_INVALID"  # a similarity threshold setting out of bounds
    BACKUP_TOOL_MISSING = "BACKUP_TOOL_MISSING"  # no pg_dump/pg_restore fit for the server
    BACKUP_FAILED = "BACKUP_FAILED"  # pg_dump failed; no backup file was left
    BACKUP_NOT_FOUND = "BACKUP_NOT_FOUND"  # the backup file to restore does not exist
    BACKUP_TARGET_NOT_EMPTY = "BACKUP_TARGET_NOT_EMPTY"  # restore refused: the target has tables
    RESTORE_FAILED = "RESTORE_FAILED"  # pg_restore failed; the target was left as it was


STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


class ApiError(Exception):
    """An error a client can act on. `code` is stable; `message` is for people."""

    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        # Earlier names of the same code, sent along so clients written against them still match.
        self.aliases = aliases
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details, aliases=self.aliases)


def error_body(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "details": details or {}}
    if aliases:
        body["aliases"] = list(aliases)
    return body
