from django.conf import settings
from django.urls import NoReverseMatch, reverse

from knowledge.offline import offline_state

# Main navigation: label and URL name. Sections whose pages are not installed yet render as
# disabled entries instead of dead links.
NAVIGATION = [
    ("Search", "knowledge:search"),
    ("Ask", "knowledge:ask"),
    ("Sources", "knowledge:source-list"),
    ("Index", "knowledge:index-status"),
    ("Cases", "dispatch:case-list"),
    ("Dispatch", "dispatch:order-list"),
    ("Sessions", "sessions_app:session-list"),
    ("Quality", "quality:evaluation"),
]


def kioku(request) -> dict:
    """What is offline (knowledge.offline: the one rule) and the navigation."""
    nav = []
    for label, url_name in NAVIGATION:
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            url = None
        nav.append(
            {"label": label, "url": url, "active": bool(url) and request.path.startswith(url)}
        )
    return {
        "kioku_offline": offline_state(),
        "kioku_chat_model": settings.KIOKU_CHAT_MODEL,
        "kioku_embedding_model": settings.KIOKU_EMBEDDING_MODEL,
        "kioku_nav": nav,
    }
