#!/bin/sh
# db-replica (compose profile `scale`): on an empty volume, a base backup of the primary with
# pg_basebackup (--write-recovery-conf leaves standby.signal and primary_conninfo behind), then
# PostgreSQL as a hot standby streaming the primary's WAL. Runs as the postgres user.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until PGPASSWORD="${REPLICATION_PASSWORD:?}" pg_basebackup --host="${PRIMARY_HOST:?}" \
      --username="${REPLICATION_USER:?}" --pgdata="$PGDATA" --wal-method=stream \
      --write-recovery-conf --checkpoint=fast; do
    echo "db-replica: the primary is not ready for a base backup yet; retrying" >&2
    find "$PGDATA" -mindepth 1 -delete
    sleep 3
  done
  chmod 700 "$PGDATA"
fi
# hot_standby_feedback: long searches on the replica are not cancelled by the primary's vacuum.
exec postgres -c hot_standby=on -c hot_standby_feedback=on
