"""Settings checks that run at start-up (`manage.py check`, runserver, migrate, the worker), so a
bad pattern is reported when the app starts instead of failing every archive later."""

import re
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def pii_patterns_compile(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for number, pattern in enumerate(settings.KIOKU_SESSION_PII_PATTERNS, 1):
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(
                Error(
                    f"KIOKU_SESSION_PII_PATTERNS line {number} is not a valid regular expression "
                    f"({exc}): {pattern!r}",
                    hint="One Python regular expression per line; escape literal characters "
                    "such as '(' or '+' with a backslash.",
                    id="kioku.E003",
                )
            )
    return errors
