#!/bin/sh
# db's first start only (the image runs /docker-entrypoint-initdb.d on an empty volume): the role
# the streaming replica (compose profile `scale`, service db-replica) logs in with, and the
# pg_hba.conf line that lets it ask for the WAL stream ("all" in pg_hba's database column does
# not cover replication connections).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=password="${REPLICATION_PASSWORD:?}" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
