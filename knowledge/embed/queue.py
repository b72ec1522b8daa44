"""The embedding queue: which embeddable rows are pending, and when each is due.

It is kept by triggers in a table of its own (`EmbeddingDue`) rather than as a partial index on
the embeddable table. The pipeline updates each row twice: the claim writes its lease and
attempt count, the write-back its vector and status. When neither update changes a column that
an index of the row's table uses, and the page has room (the chunk table's fillfactor), both
are HOT updates: PostgreSQL adds no index entries for them, above all none to the chunks' GIN
keyword index (~400 lexemes per chunk of a manual). A partial index "WHERE status = 'pending'"
made every write-back touch every index. Figures in BENCHMARKS.md.

The triggers mirror `embedding_status` and `embedding_next_attempt_at`, whichever way a row is
written (ORM, COPY, bulk UPDATE, DELETE, TRUNCATE), so code keeps setting those two columns.
Only the claim writes the queue itself: it moves a claimed row's due time to the end of its
lease, so claims scan the queue in due order without stepping over rows in flight. Every
embeddable model's table gets the triggers through `install_sql` in a migration (chunks:
knowledge migration 0007). (TG_TABLE_NAME is cast to text: compared as `name`, it would keep
PostgreSQL from using the queue's indexes.)
"""

QUEUE_TABLE = "knowledge_embeddingdue"

FUNCTIONS_SQL = f"""
CREATE OR REPLACE FUNCTION kioku_embedding_due_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {QUEUE_TABLE} (table_name, row_id, due_at)
    SELECT TG_TABLE_NAME::text, id, embedding_next_attempt_at FROM new_rows
    WHERE embedding_status = 'pending'
    ON CONFLICT (table_name, row_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kioku_embedding_due_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.embedding_status = 'pending' THEN
        INSERT INTO {QUEUE_TABLE} (table_name, row_id, due_at)
        VALUES (TG_TABLE_NAME::text, NEW.id, NEW.embedding_next_attempt_at)
        ON CONFLICT (table_name, row_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    ELSE
        DELETE FROM {QUEUE_TABLE} WHERE table_name = TG_TABLE_NAME::text AND row_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kioku_embedding_due_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {QUEUE_TABLE} AS due USING old_rows
    WHERE due.table_name = TG_TABLE_NAME::text AND due.row_id = old_rows.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kioku_embedding_due_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {QUEUE_TABLE} WHERE table_name = TG_TABLE_NAME::text;
    RETURN NULL;
END $$;
"""

DROP_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS kioku_embedding_due_inserted();
DROP FUNCTION IF EXISTS kioku_embedding_due_updated();
DROP FUNCTION IF EXISTS kioku_embedding_due_deleted();
DROP FUNCTION IF EXISTS kioku_embedding_due_truncated();
"""


def install_sql(table: str) -> str:
    """Triggers that keep the queue in step with `table`, and the queue entries of the rows it
    already has. Inserts and deletes are handled per statement (a COPY of 20,000 chunks is one
    trigger call); updates per row, and only when the status or due time changes (claims,
    which change neither, fire nothing)."""
    return f"""
    CREATE TRIGGER {table}_due_inserted AFTER INSERT ON {table}
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION kioku_embedding_due_inserted();
    CREATE TRIGGER {table}_due_updated
        AFTER UPDATE OF embedding_status, embedding_next_attempt_at ON {table}
        FOR EACH ROW WHEN (
            OLD.embedding_status IS DISTINCT FROM NEW.embedding_status
            OR OLD.embedding_next_attempt_at IS DISTINCT FROM NEW.embedding_next_attempt_at
        ) EXECUTE FUNCTION kioku_embedding_due_updated();
    CREATE TRIGGER {table}_due_deleted AFTER DELETE ON {table}
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION kioku_embedding_due_deleted();
    CREATE TRIGGER {table}_due_truncated AFTER TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION kioku_embedding_due_truncated();
    INSERT INTO {QUEUE_TABLE} (table_name, row_id, due_at)
    SELECT '{table}', id, embedding_next_attempt_at FROM {table}
    WHERE embedding_status = 'pending'
    ON CONFLICT (table_name, row_id) DO NOTHING;
    """


def uninstall_sql(table: str) -> str:
    return f"""
    DROP TRIGGER IF EXISTS {table}_due_inserted ON {table};
    DROP TRIGGER IF EXISTS {table}_due_updated ON {table};
    DROP TRIGGER IF EXISTS {table}_due_deleted ON {table};
    DROP TRIGGER IF EXISTS {table}_due_truncated ON {table};
    DELETE FROM {QUEUE_TABLE} WHERE table_name = '{table}';
    """
