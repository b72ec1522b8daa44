"""Development conveniences used by `manage.py kioku_run`: the dev admin and the demo data."""

import importlib
import secrets
from collections.abc import Callable

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction

DEV_ADMIN_USERNAME = "admin"
# One staff user per group of core/permissions.py, to try the pages as each role.
DEMO_USERS = {
    "viewer": "demo-viewer",
    "curator": "demo-curator",
    "dispatcher": "demo-dispatcher",
}


def dev_admin_ensure(*, password: str | None = None) -> str | None:
    """Create the development superuser if no superuser exists; return its new password
    (shown once), or None when one already exists."""
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = password or secrets.token_urlsafe(12)
    User.objects.create_superuser(DEV_ADMIN_USERNAME, "admin@kioku.invalid", password)
    return password


def demo_users_ensure() -> dict[str, str]:
    """Create the demo users missing (staff, each in its group); return the new ones' usernames
    and passwords (shown once)."""
    from django.contrib.auth.models import Group

    User = get_user_model()
    created = {}
    for group_name, username in DEMO_USERS.items():
        if User.objects.filter(username=username).exists():
            continue
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(
            username, f"{username}@kioku.invalid", password, is_staff=True
        )
        user.groups.add(Group.objects.get(name=group_name))
        created[username] = password
    return created


def demo_loaders() -> list[tuple[str, Callable[[], str], Callable[[], bool]]]:
    """Each app may offer `demo.py` with `demo_load() -> str` (a summary) and `demo_is_loaded()`."""
    loaders = []
    for label in ("knowledge", "sessions_app", "dispatch", "quality", "line_channel"):
        module_name = f"{apps.get_app_config(label).name}.demo"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        loaders.append((label, module.demo_load, module.demo_is_loaded))
    return loaders


def demo_load_if_empty() -> list[str]:
    """Load each app's demo data when that app holds no data yet. Returns one line per app loaded."""
    summaries = []
    for label, load, is_loaded in demo_loaders():
        if is_loaded():
            continue
        with transaction.atomic():
            summaries.append(f"{label}: {load()}")
    return summaries
