#!/bin/sh
# The compose demo's load generator: creates the pgbench tables on the primary once, then runs
# pgbench through HAProxy in rounds of a minute, for ever. Each round opens new connections, so
# the load follows the pgsplit instances as they are scaled up or down.
# Environment: PGPASSWORD, LOAD_CLIENTS (default 8), LOAD_RATE (transactions/s, default 100).
set -eu

: "${LOAD_CLIENTS:=8}"
: "${LOAD_RATE:=100}"

until pg_isready -q -h haproxy -p 6432 -U postgres; do sleep 1; done

tables=$(psql -X -qtA -h primary -U postgres -d postgres \
  -c "SELECT count(*) FROM pg_tables WHERE tablename = 'pgbench_accounts'")
if [ "$tables" = 0 ]; then
  echo "load: creating the pgbench tables on the primary"
  pgbench -i -s 10 -h primary -U postgres postgres
fi

while :; do
  # -n: no VACUUM before the round (the tables are the primary's business); a round in which an
  # instance went away ends with some clients aborted, and the next one reconnects them.
  pgbench -n -h haproxy -p 6432 -U postgres -c "$LOAD_CLIENTS" -j 2 -R "$LOAD_RATE" -T 60 -P 10 \
    postgres || echo "load: round ended with errors; reconnecting"
done
