-- Read-mostly mix in autocommit: 90% point reads, 10% updates of the same rows, so a
-- session often reads right after its own write (read-your-writes decides where it goes).
\set aid random(1, :naccounts)
\set roll random(1, 100)
\if :roll <= 10
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
\else
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\endif
