#!/bin/sh
# Runs once, from /docker-entrypoint-initdb.d, when the primary's data directory is created.
# Must stay executable: the postgres image sources (rather than runs) non-executable *.sh files.
# Creates the replication role and lets it stream from hosts on the container network.
set -eu

: "${REPLICATION_USER:=replicator}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
  --set=repl_user="$REPLICATION_USER" --set=repl_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"repl_user" WITH LOGIN REPLICATION PASSWORD :'repl_password';
SQL

# samenet: any address in a subnet this container is attached to, i.e. the compose network.
printf 'host replication %s samenet scram-sha-256\n' "$REPLICATION_USER" >> "$PGDATA/pg_hba.conf"
