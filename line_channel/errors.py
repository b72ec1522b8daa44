"""Every error code the LINE webhook answers with (`{"code", "message", "details"}`, see
core/errors.py). One line each says when it is sent."""

LINE_DISABLED = "LINE_DISABLED"  # LINE_CHANNEL_SECRET or LINE_CHANNEL_ACCESS_TOKEN unset (404)
LINE_SIGNATURE_MISSING = "LINE_SIGNATURE_MISSING"  # no X-Line-Signature header (401)
LINE_SIGNATURE_INVALID = "LINE_SIGNATURE_INVALID"  # the body's HMAC does not match (403)
LINE_BODY_INVALID = "LINE_BODY_INVALID"  # a signed body that is not a LINE webhook payload (400)
LINE_BODY_TOO_LARGE = "LINE_BODY_TOO_LARGE"  # over KIOKU_LINE_MAX_BODY_BYTES (413)
