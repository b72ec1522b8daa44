"""pg_stat_statements for the index page's slowest statements, where the server offers it and the
role may create it; elsewhere (a managed PostgreSQL without it, a role without the right) nothing
happens and the page says how to enable it. Recording needs the library preloaded
(shared_preload_libraries), which the embedded server does (config/embedded_db.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from core.database import pg_stat_statements_install

    schema_editor.connection.ensure_connection()
    pg_stat_statements_install(schema_editor.connection.connection)


def uninstall(apps, schema_editor):
    schema_editor.execute("DROP EXTENSION IF EXISTS pg_stat_statements")


class Migration(migrations.Migration):
    dependencies = [("core", "0005_threshold_settings")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
