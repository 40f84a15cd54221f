-- A cached point query: 1000 hot rows, the pgsplit cache hint (a plain comment for a server).
\set aid random(1, 1000)
/* pgsplit: cache, ttl=600s */ SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
