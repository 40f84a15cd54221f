"""asyncpg through pgsplit: each check prints "ok <name>" or "FAIL <name>: <error>"; the exit
status is the number of failures. Run by tests/drivers.rs as: asyncpg_probe.py HOST PORT DB TABLE."""
import asyncio
import io
import sys

import asyncpg

HOST, PORT, DB, TABLE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


async def connect():
    return await asyncpg.connect(host=HOST, port=PORT, user="postgres", database=DB)


async def setup(c):
    await c.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, f float8, j jsonb, a int[])")
    await c.execute(f"INSERT INTO {TABLE} (id, name, f, j, a) VALUES ($1, $2, $3, $4, $5)",
                    1, "one", 1.5, '{"k": 1}', [1, 2, 3])
    row = await c.fetchrow(f"SELECT name, f, a FROM {TABLE} WHERE id = $1", 1)
    assert tuple(row) == ("one", 1.5, [1, 2, 3]), row


async def prepared(c):
    select = await c.prepare(f"SELECT name FROM {TABLE} WHERE id = $1")
    insert = await c.prepare(f"INSERT INTO {TABLE} (id, name) VALUES ($1, $2)")
    for i in range(2, 30):
        await insert.fetch(i, f"n{i}")
        assert await select.fetchval(i) == f"n{i}", i


async def executemany(c):
    await c.executemany(f"INSERT INTO {TABLE} (id, name) VALUES ($1, $2)", [(i, str(i)) for i in range(100, 200)])
    assert await c.fetchval(f"SELECT count(*) FROM {TABLE} WHERE id BETWEEN 100 AND 199") == 100


async def transaction_and_savepoint(c):
    async with c.transaction():
        await c.execute(f"UPDATE {TABLE} SET name = 'uno' WHERE id = 1")
        async with c.transaction():
            await c.execute(f"UPDATE {TABLE} SET name = 'dos' WHERE id = 1")
    assert await c.fetchval(f"SELECT name FROM {TABLE} WHERE id = 1") == "dos"


async def cursor(c):
    async with c.transaction():
        n = 0
        async for _ in c.cursor(f"SELECT id FROM {TABLE} ORDER BY id", prefetch=7):
            n += 1
    assert n == 129, n


async def copy(c):
    # Describes the table (Parse, Describe, Flush) before the COPY: a read, then a write.
    await c.fetchval("SELECT 1")
    await c.copy_records_to_table(TABLE, records=[(i, f"c{i}") for i in range(300, 400)], columns=["id", "name"])
    out = io.BytesIO()
    await c.copy_from_query(f"SELECT id FROM {TABLE} WHERE id >= 300", output=out)
    assert out.getvalue().count(b"\n") == 100


async def errors(c):
    try:
        await c.execute(f"INSERT INTO {TABLE} (id) VALUES (1)")
        raise AssertionError("no error")
    except asyncpg.UniqueViolationError:
        pass
    try:
        await c.fetch("SELECT $1::int", "x")
        raise AssertionError("no error")
    except asyncpg.DataError:
        pass
    assert await c.fetchval("SELECT 2") == 2


async def listen(c):
    got = asyncio.get_running_loop().create_future()
    listener = await connect()
    await listener.add_listener(TABLE, lambda *args: got.done() or got.set_result(args[3]))
    await c.execute(f"NOTIFY {TABLE}, 'hi'")
    assert await asyncio.wait_for(got, 10) == "hi"
    await listener.close()


async def cancel(c):
    task = asyncio.ensure_future(c.fetch("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.5)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert await c.fetchval("SELECT 3") == 3


async def custom_types(c):
    await c.execute(f"CREATE TYPE {TABLE}_mood AS ENUM ('sad', 'ok')")
    assert await c.fetchval(f"SELECT 'ok'::{TABLE}_mood") == "ok"


async def read_your_writes(c):
    for i in range(500, 530):
        await c.execute(f"INSERT INTO {TABLE} (id, name) VALUES ($1, 'r')", i)
        assert await c.fetchval(f"SELECT name FROM {TABLE} WHERE id = $1", i) == "r", i


async def pool(_c):
    p = await asyncpg.create_pool(host=HOST, port=PORT, user="postgres", database=DB, min_size=2, max_size=4)

    async def job(i):
        async with p.acquire() as c:
            await c.execute(f"INSERT INTO {TABLE} (id, name) VALUES ($1, 'p')", 1000 + i)
            return await c.fetchval(f"SELECT name FROM {TABLE} WHERE id = $1", 1000 + i)

    assert await asyncio.gather(*[job(i) for i in range(40)]) == ["p"] * 40
    await p.close()


async def explain_route(c):
    # asyncpg prepares every statement: EXPLAIN ROUTE is answered over the extended protocol.
    row = await c.fetchrow(f"EXPLAIN ROUTE DELETE FROM {TABLE}")
    assert list(row.keys()) == ["node", "role", "reason"], row
    assert row["role"] == "primary" and row["reason"].startswith("write"), row
    assert await c.fetchval(f"SELECT count(*) > 0 FROM {TABLE}"), "nothing ran"


async def main():
    failures = 0
    c = await connect()
    for check in [setup, prepared, executemany, transaction_and_savepoint, cursor, copy, errors,
                  listen, cancel, custom_types, read_your_writes, pool, explain_route]:
        try:
            await asyncio.wait_for(check(c), 30)
            print("ok", check.__name__, flush=True)
        except Exception as e:  # every failure is reported, then the next check runs
            failures += 1
            print(f"FAIL {check.__name__}: {type(e).__name__}: {e}", flush=True)
            if c.is_closed():
                c = await connect()
    await c.close()
    return failures


sys.exit(asyncio.run(main()))
