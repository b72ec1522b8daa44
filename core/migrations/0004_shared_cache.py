"""The table of the `shared` cache (config/settings.py CACHES): what every web process must count
together, such as the API throttle. UNLOGGED: a cache, so a crash may empty it."""

from django.db import migrations

CREATE = """
CREATE UNLOGGED TABLE IF NOT EXISTS kioku_shared_cache (
    cache_key varchar(255) NOT NULL PRIMARY KEY,
    value text NOT NULL,
    expires timestamp with time zone NOT NULL
);
CREATE INDEX IF NOT EXISTS kioku_shared_cache_expires ON kioku_shared_cache (expires);
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0003_groups")]

    operations = [migrations.RunSQL(CREATE, "DROP TABLE IF EXISTS kioku_shared_cache;")]
