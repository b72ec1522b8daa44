"""The four groups of core/permissions.py (viewer, curator, dispatcher, admin) and the custom
permissions they use."""

from django.db import migrations


def groups_create(apps, schema_editor):
    from core.permissions import CURATOR, DISPATCHER, groups_sync

    using = schema_editor.connection.alias
    groups_sync(apps=apps, using=using, strict=False)
    # Before the groups, every staff user could do everything the pages offer: keep that for the
    # staff already there (new staff start with no group; superusers need none).
    User = apps.get_model("auth", "User")
    Group = apps.get_model("auth", "Group")
    keep = Group.objects.using(using).filter(name__in=[CURATOR, DISPATCHER])
    for user in User.objects.using(using).filter(
        is_staff=True, is_superuser=False, groups__isnull=True
    ):
        user.groups.add(*keep)


def groups_remove(apps, schema_editor):
    from core.permissions import ADMIN, CURATOR, CUSTOM_PERMISSIONS, DISPATCHER, VIEWER

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    using = schema_editor.connection.alias
    Group.objects.using(using).filter(name__in=[VIEWER, CURATOR, DISPATCHER, ADMIN]).delete()
    for app_label, model, codename, _ in CUSTOM_PERMISSIONS:
        Permission.objects.using(using).filter(
            content_type__app_label=app_label, content_type__model=model, codename=codename
        ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_api_keys"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The groups hold permissions of these apps' models: their tables must exist.
        ("knowledge", "0007_embedding_queue"),
        ("sessions_app", "0001_sessions_and_messages"),
        ("dispatch", "0002_order_rules_location_invoice_sequence"),
    ]

    operations = [migrations.RunPython(groups_create, groups_remove)]
