"""Who may do what on the pages and in the admin: four groups and their permissions, declared here
and nowhere else.

Pages check one permission per view (`core.pages.permission_required`), templates show a button
only under the same permission (`{% if perms.… %}`), and the admin checks the model permissions
(its actions name theirs). The API is separate: keys carry scopes (core/auth.py).

`groups_sync` writes this table to the database: the data migration `core.0003_groups` runs it,
and so does every `migrate` (post_migrate), so a permission added here reaches the groups without
a hand edit. Change the groups here, not in the admin: a `migrate` puts them back.
"""

from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db import DEFAULT_DB_ALIAS

VIEWER = "viewer"
CURATOR = "curator"
DISPATCHER = "dispatcher"
ADMIN = "admin"

# Permissions that no add/change/delete/view of a model names: (app, model, codename, name).
CUSTOM_PERMISSIONS = [
    (
        "knowledge",
        "knowledgechunk",
        "manage_index",
        "Can rebuild, clear and switch the search index and retry dead letters",
    ),
    (
        "dispatch",
        "problemcard",
        "curate_problemcard",
        "Can disable a resolved case or fix its resolution",
    ),
    ("dispatch", "serviceorder", "change_order_status", "Can change the status of a service order"),
]

# The apps whose rows every group may read (API keys, users and django-q's tables are admin's).
VIEWED_APPS = ("knowledge", "sessions_app", "dispatch", "quality")

# Reading beyond the apps above: the calibration page and the history of thresholds.
VIEWER_PERMISSIONS = ["core.view_thresholdsetting"]
CURATOR_PERMISSIONS = [
    "knowledge.add_knowledgesource",
    "knowledge.change_knowledgesource",
    "knowledge.delete_knowledgesource",
    "knowledge.change_knowledgechunk",
    "knowledge.change_deadletterchunk",
    "knowledge.change_answer",
    "knowledge.change_chunkfeedback",
    "knowledge.manage_index",
    "sessions_app.change_chatsession",
    "sessions_app.delete_chatsession",
    "dispatch.curate_problemcard",
    "dispatch.change_casefeedback",
    "quality.add_evalset",
    "quality.change_evalset",
    "quality.delete_evalset",
    "quality.add_evalcase",
    "quality.change_evalcase",
    "quality.delete_evalcase",
    "quality.add_evalexpected",
    "quality.change_evalexpected",
    "quality.delete_evalexpected",
    "quality.add_evalrun",
    "quality.add_retrievaltest",
    "core.add_thresholdsetting",
]
DISPATCHER_PERMISSIONS = [
    "dispatch.add_problemcard",
    "dispatch.change_problemcard",
    "dispatch.add_problemcardphoto",
    "dispatch.add_serviceorder",
    "dispatch.change_serviceorder",
    "dispatch.change_order_status",
    "dispatch.add_orderline",
    "dispatch.delete_orderline",
    "dispatch.add_invoice",
    "dispatch.add_technician",
    "dispatch.change_technician",
    "core.add_thresholdsetting",
]


def group_permissions(
    *, apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS
) -> dict[str, set[str]]:
    """Each group's permissions as `app_label.codename`. Viewer reads; curator and dispatcher
    read and do their own work; admin holds every permission."""
    Permission = apps.get_model("auth", "Permission")
    every = {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.using(using).values_list(
            "content_type__app_label", "codename"
        )
    }
    viewed = {
        perm
        for perm in every
        if perm.split(".")[0] in VIEWED_APPS and perm.split(".")[1].startswith("view_")
    } | set(VIEWER_PERMISSIONS)
    return {
        VIEWER: viewed,
        CURATOR: viewed | set(CURATOR_PERMISSIONS),
        DISPATCHER: viewed | set(DISPATCHER_PERMISSIONS),
        ADMIN: every,
    }


def permissions_ensure(
    *, apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS, model_permissions: bool = True
) -> None:
    """The custom permissions above and, unless Django has just done it, every model's (Django
    creates them after migrate; a data migration runs before)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs() if model_permissions else ():
        # create_permissions skips an app without models_module, which no app of a migration's
        # historical registry has: lend it one for the call.
        lent = getattr(app_config, "models_module", None) is None
        if lent:
            app_config.models_module = True
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            if lent:
                app_config.models_module = None  # as it was (a stub's has no such attribute)
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for app_label, model, codename, name in CUSTOM_PERMISSIONS:
        content_type, _ = ContentType.objects.using(using).get_or_create(
            app_label=app_label, model=model
        )
        Permission.objects.using(using).update_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )


def groups_sync(
    *,
    apps: Apps = global_apps,
    using: str = DEFAULT_DB_ALIAS,
    strict: bool = True,
    model_permissions: bool = True,
) -> None:
    """Create the four groups and give each exactly the permissions of the table above.
    `strict=False` (the data migration) leaves out permissions of models a later migration
    adds; the post_migrate run at the end of the same `migrate` gives them."""
    permissions_ensure(apps=apps, using=using, model_permissions=model_permissions)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    by_name = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in Permission.objects.using(using).values_list(
            "pk", "content_type__app_label", "codename"
        )
    }
    for name, perms in group_permissions(apps=apps, using=using).items():
        missing = perms - set(by_name)
        if missing and strict:
            raise LookupError(f"Group {name!r} names unknown permissions: {sorted(missing)}")
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set([by_name[perm] for perm in perms if perm in by_name])


def groups_sync_after_migrate(
    sender: Any, *, apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS, **_: Any
) -> None:
    """post_migrate receiver, also after a test database flush. post_migrate is sent once per
    app, in INSTALLED_APPS order, and Django creates each app's model permissions on its own
    signal: at the last app's, every permission exists and only the groups are left to do."""
    last = [config for config in global_apps.get_app_configs() if config.models_module][-1]
    if sender is last:
        groups_sync(apps=apps, using=using, model_permissions=False)
