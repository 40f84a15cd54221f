#!/bin/sh
# Entrypoint of a streaming replica. On first start (empty data directory) it clones the
# primary with pg_basebackup, then hands over to the postgres image's own entrypoint, which
# finds an existing data directory and just starts the server (as a standby: -R wrote
# standby.signal and primary_conninfo).
# Environment: PRIMARY_HOST, PRIMARY_PORT, REPLICATION_USER, REPLICATION_PASSWORD, REPLICA_SLOT.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=primary}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:=replicator}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${REPLICA_SLOT:?REPLICA_SLOT must be set (e.g. replica1)}"

# Run a command as the postgres user (the container may start as root or as postgres).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then gosu postgres "$@"; else "$@"; fi
}

if [ -z "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
  fi
  chmod 0700 "$PGDATA"

  echo "replica-entrypoint: waiting for $PRIMARY_HOST:$PRIMARY_PORT"
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER"; do
    sleep 1
  done

  # Reuse the slot if an earlier attempt (or an earlier life of this replica) created it.
  slot_exists=$(env PGPASSWORD="$REPLICATION_PASSWORD" psql -X -qtA \
    -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -d postgres \
    -v slot="$REPLICA_SLOT" <<'SQL'
SELECT count(*) FROM pg_replication_slots WHERE slot_name = :'slot';
SQL
  )
  create_slot=-C
  if [ "$slot_exists" != 0 ]; then create_slot=; fi

  echo "replica-entrypoint: base backup from $PRIMARY_HOST into $PGDATA (slot $REPLICA_SLOT)"
  # On failure pg_basebackup empties $PGDATA again, so a restart retries from scratch.
  # shellcheck disable=SC2086 # $create_slot is either -C or nothing
  as_postgres env PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
    -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" \
    -D "$PGDATA" -R -X stream $create_slot -S "$REPLICA_SLOT" --checkpoint=fast
fi

exec docker-entrypoint.sh "$@"
