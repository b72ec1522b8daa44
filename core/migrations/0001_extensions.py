"""Enable pgvector and pg_trgm before any table uses them. The `kioku.E002` system check (run by
`migrate` before this) explains a missing or too-old pgvector; this guard repeats it for callers
that skip checks."""

from django.db import migrations


def require_pgvector(apps, schema_editor):
    from django.core.exceptions import ImproperlyConfigured

    from core.database import database_capabilities

    problem = database_capabilities(schema_editor.connection).pgvector_problem()
    if problem:
        raise ImproperlyConfigured(problem)


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.RunPython(require_pgvector, migrations.RunPython.noop, elidable=False),
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS vector;",
            reverse_sql="DROP EXTENSION IF EXISTS vector;",
        ),
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
            reverse_sql="DROP EXTENSION IF EXISTS pg_trgm;",
        ),
    ]
