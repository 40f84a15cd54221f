"""psycopg 3 through pgsplit: each check prints "ok <name>" or "FAIL <name>: <error>"; the exit
status is the number of failures. Run by tests/drivers.rs as: psycopg_probe.py DSN TABLE."""
import sys
import threading

import psycopg

DSN, TABLE = sys.argv[1], sys.argv[2]


def setup(c):
    c.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, data bytea)")
    c.execute(f"INSERT INTO {TABLE} (id, name, data) VALUES (%s, %s, %s)", (1, "one", b"\x00\x01"))
    assert c.execute(f"SELECT id, name, data FROM {TABLE} WHERE id = %s", (1,)).fetchone() == (1, "one", b"\x00\x01")


def server_side_prepared(c):
    # prepare_threshold=1: from the second execution on, named prepared statements.
    c.prepare_threshold = 1
    for i in range(2, 12):
        c.execute(f"INSERT INTO {TABLE} (id, name) VALUES (%s, %s)", (i, f"n{i}"))
        assert c.execute(f"SELECT name FROM {TABLE} WHERE id = %s", (i,)).fetchone() == (f"n{i}",), i


def binary_results(c):
    row = c.cursor(binary=True).execute(f"SELECT id, name FROM {TABLE} WHERE id = %s", (1,)).fetchone()
    assert row == (1, "one"), row


def transaction(c):
    with c.transaction():
        c.execute(f"UPDATE {TABLE} SET name = 'uno' WHERE id = 1")
        assert c.execute(f"SELECT name FROM {TABLE} WHERE id = 1").fetchone() == ("uno",)
    assert c.execute(f"SELECT name FROM {TABLE} WHERE id = 1").fetchone() == ("uno",)


def pipeline(c):
    with c.pipeline():
        c.execute(f"INSERT INTO {TABLE} (id, name) VALUES (%s, %s)", (100, "p"))
        first = c.execute(f"SELECT name FROM {TABLE} WHERE id = %s", (100,))
        c.execute(f"UPDATE {TABLE} SET name = %s WHERE id = %s", ("q", 100))
        second = c.execute(f"SELECT name FROM {TABLE} WHERE id = %s", (100,))
    assert first.fetchone() == ("p",) and second.fetchone() == ("q",)


def executemany(c):
    c.cursor().executemany(f"INSERT INTO {TABLE} (id, name) VALUES (%s, %s)", [(i, str(i)) for i in range(200, 250)])
    assert c.execute(f"SELECT count(*) FROM {TABLE} WHERE id BETWEEN 200 AND 249").fetchone() == (50,)


def copy(c):
    with c.cursor().copy(f"COPY {TABLE} (id, name) FROM STDIN") as cp:
        for i in range(300, 400):
            cp.write_row((i, f"c{i}"))
    with c.cursor().copy(f"COPY {TABLE} (id, name) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "text"])
        for i in range(400, 410):
            cp.write_row((i, f"b{i}"))
    with c.cursor().copy(f"COPY (SELECT id FROM {TABLE} WHERE id >= 300) TO STDOUT") as cp:
        assert sum(1 for _ in cp.rows()) == 110


def server_cursor(c):
    with c.transaction(), c.cursor(name="probe_cursor") as cur:
        cur.itersize = 7
        cur.execute(f"SELECT id FROM {TABLE} ORDER BY id")
        assert len(list(cur)) == 172


def notify(c):
    with psycopg.connect(DSN, autocommit=True) as listener:
        listener.execute(f"LISTEN {TABLE}")
        c.execute(f"NOTIFY {TABLE}, 'hello'")
        for n in listener.notifies():
            assert n.payload == "hello", n
            break


def errors(c):
    try:
        c.execute(f"INSERT INTO {TABLE} (id) VALUES (1)")
        raise AssertionError("no error")
    except psycopg.errors.UniqueViolation:
        pass
    assert c.execute("SELECT 1").fetchone() == (1,)


def cancel(c):
    threading.Timer(0.5, c.cancel).start()
    try:
        c.execute("SELECT pg_sleep(10)")
        raise AssertionError("not cancelled")
    except psycopg.errors.QueryCanceled:
        pass
    assert c.execute("SELECT 2").fetchone() == (2,)


def read_your_writes(c):
    for i in range(500, 530):
        c.execute(f"INSERT INTO {TABLE} (id, name) VALUES (%s, 'r')", (i,))
        assert c.execute(f"SELECT name FROM {TABLE} WHERE id = %s", (i,)).fetchone() == ("r",), i


def pgsplit_show(c):
    # SHOW pgsplit.* over the extended protocol: prepared, psycopg parses it once and binds it after.
    c.execute("SET pgsplit.consistency = 'strong'")
    for _ in range(3):
        row = c.execute("SHOW pgsplit.consistency", prepare=True).fetchone()
        assert row == ("strong",), row
    c.execute("RESET pgsplit.consistency")
    c.execute(f"INSERT INTO {TABLE} (id, name) VALUES (600, 'show')")
    token = c.execute("SHOW pgsplit.causal_token", prepare=True).fetchone()[0]
    assert token == c.info.parameter_status("pgsplit.causal_token"), token


def explain_route(c):
    # EXPLAIN ROUTE over the extended protocol, as psycopg sends every statement; prepared, it is
    # parsed once and bound after.
    for _ in range(3):
        cur = c.execute(f"EXPLAIN ROUTE DELETE FROM {TABLE}", prepare=True)
        assert [d.name for d in cur.description] == ["node", "role", "reason"], cur.description
        node, role, reason = cur.fetchone()
        assert role == "primary" and reason.startswith("write"), (node, role, reason)
    assert c.execute(f"SELECT count(*) > 0 FROM {TABLE}").fetchone() == (True,), "nothing ran"


failures = 0
with psycopg.connect(DSN, autocommit=True) as conn:
    for check in [setup, server_side_prepared, binary_results, transaction, pipeline, executemany,
                  copy, server_cursor, notify, errors, cancel, read_your_writes, pgsplit_show,
                  explain_route]:
        try:
            check(conn)
            print("ok", check.__name__, flush=True)
        except Exception as e:  # every failure is reported, then the next check runs
            failures += 1
            print(f"FAIL {check.__name__}: {type(e).__name__}: {e}", flush=True)
sys.exit(failures)
