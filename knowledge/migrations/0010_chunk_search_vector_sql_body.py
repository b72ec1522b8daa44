"""kioku_chunk_search_vector with a SQL-standard body (RETURN …), resolved when it is created.

Its body was a string parsed at each use with the session's search_path; pg_restore runs with an
empty search_path, so filling the generated `search_vector` column while restoring a backup
failed ("function kioku_search_vector(text) does not exist"). A RETURN body binds
kioku_search_vector once, records the dependency (pg_dump creates it first) and is still inlined
by the planner. The result is the same, so the stored column and the GIN index stay valid."""

from django.db import migrations

SQL_BODY = """
CREATE OR REPLACE FUNCTION kioku_chunk_search_vector(content text, location jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(kioku_search_vector(coalesce(location ->> 'heading_path', '')), 'A')
    || kioku_search_vector(coalesce(content, ''));
"""

STRING_BODY = """
CREATE OR REPLACE FUNCTION kioku_chunk_search_vector(content text, location jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT setweight(kioku_search_vector(coalesce(location ->> 'heading_path', '')), 'A')
      || kioku_search_vector(coalesce(content, ''))
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0009_answer_channel_eval")]

    operations = [migrations.RunSQL(SQL_BODY, reverse_sql=STRING_BODY)]
