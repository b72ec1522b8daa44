"""Error codes of the sessions app, defined once: services, queries, the archiver, the API and
the pages raise or compare these constants. The strings are stable (clients match on them)."""

from core.errors import ApiError

# No session with that key (404).
SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
# A malformed key, or neither a key nor a platform and a channel (422).
SESSION_INVALID_KEY = "SESSION_INVALID_KEY"
# An append without any message (422).
SESSION_NO_MESSAGES = "SESSION_NO_MESSAGES"
# More messages in one append than KIOKU_SESSION_MAX_APPEND (413).
SESSION_TOO_MANY_MESSAGES = "SESSION_TOO_MANY_MESSAGES"
# A role other than user, assistant or system (422).
SESSION_INVALID_ROLE = "SESSION_INVALID_ROLE"
# A message with no text (422).
SESSION_EMPTY_MESSAGE = "SESSION_EMPTY_MESSAGE"
# A message longer than KIOKU_SESSION_MAX_MESSAGE_CHARS (413).
SESSION_MESSAGE_TOO_LONG = "SESSION_MESSAGE_TOO_LONG"
# The session changed during every archive attempt; the schedule retries once it is idle (409).
SESSION_ARCHIVE_CONFLICT = "SESSION_ARCHIVE_CONFLICT"


class SessionError(ApiError):
    """Errors of the sessions app; `code` is one of the constants above."""
