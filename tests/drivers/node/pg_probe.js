// node-postgres (npm's pg, with pg-cursor and pg-copy-streams) through pgsplit: each check
// prints "ok <name>" or "FAIL <name>: <error>"; the exit status is the number of failures.
// Run by tests/drivers.rs as: node pg_probe.js HOST PORT DB TABLE.
'use strict';
const assert = require('node:assert/strict');
const { Client } = require('pg');
const Cursor = require('pg-cursor');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');

const [host, port, database, table] = process.argv.slice(2);
const config = { host, port: Number(port), user: 'postgres', database };
const CHECK_LIMIT_MS = 30000;

async function connected() {
  const client = new Client(config);
  await client.connect();
  return client;
}

async function setup(c) {
  await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text, f float8, a int[])`);
  await c.query(`INSERT INTO ${table} (id, name, f, a) VALUES ($1, $2, $3, $4)`, [1, 'one', 1.5, [1, 2, 3]]);
  const { rows } = await c.query(`SELECT name, f, a FROM ${table} WHERE id = $1`, [1]);
  assert.deepEqual(rows, [{ name: 'one', f: 1.5, a: [1, 2, 3] }]);
}

// Named statements: prepared once per connection by the driver, then only bound.
async function prepared(c) {
  for (let i = 2; i < 30; i++) {
    await c.query({ name: 'insert', text: `INSERT INTO ${table} (id, name) VALUES ($1, $2)`, values: [i, `n${i}`] });
    const { rows } = await c.query({ name: 'select', text: `SELECT name FROM ${table} WHERE id = $1`, values: [i] });
    assert.equal(rows[0].name, `n${i}`);
  }
}

async function multiStatement(c) {
  const results = await c.query('SELECT 1 AS a; SELECT 2 AS b');
  assert.equal(results.length, 2);
  assert.equal(results[1].rows[0].b, 2);
}

async function transactionAndSavepoint(c) {
  await c.query('BEGIN');
  await c.query(`UPDATE ${table} SET name = 'uno' WHERE id = 1`);
  await c.query('SAVEPOINT s');
  await c.query(`UPDATE ${table} SET name = 'dos' WHERE id = 1`);
  await c.query('ROLLBACK TO SAVEPOINT s');
  await c.query('COMMIT');
  const { rows } = await c.query(`SELECT name FROM ${table} WHERE id = 1`);
  assert.equal(rows[0].name, 'uno');
}

async function readAll(c, cursor) {
  const reading = c.query(cursor);
  let n = 0;
  for (;;) {
    const rows = await reading.read(7);
    if (rows.length === 0) break;
    n += rows.length;
  }
  await reading.close();
  return n;
}

// pg-cursor binds a portal and executes it 7 rows at a time (Execute with a row limit, Flush).
async function cursorInTransaction(c) {
  await c.query('BEGIN');
  const n = await readAll(c, new Cursor(`SELECT id FROM ${table} ORDER BY id`));
  await c.query('COMMIT');
  assert.equal(n, 29);
}

async function cursorInAutocommit(c) {
  assert.equal(await readAll(c, new Cursor(`SELECT id FROM ${table} ORDER BY id`)), 29);
}

async function copy(c) {
  await new Promise((resolve, reject) => {
    const sink = c.query(copyFrom(`COPY ${table} (id, name) FROM STDIN`));
    sink.on('error', reject);
    sink.on('finish', resolve);
    for (let i = 300; i < 400; i++) sink.write(`${i}\tc${i}\n`);
    sink.end();
  });
  let text = '';
  await new Promise((resolve, reject) => {
    const source = c.query(copyTo(`COPY (SELECT id FROM ${table} WHERE id >= 300) TO STDOUT`));
    source.on('data', (chunk) => { text += chunk; });
    source.on('end', resolve);
    source.on('error', reject);
  });
  assert.equal(text.split('\n').filter(Boolean).length, 100);
}

async function errorThenMore(c) {
  await assert.rejects(c.query(`SELECT no_such_column FROM ${table}`), { code: '42703' });
  await assert.rejects(c.query({ name: 'bad', text: 'SELECT 1 +', values: [] }), { code: '42601' });
  const { rows } = await c.query('SELECT 42 AS x');
  assert.equal(rows[0].x, 42);
}

async function listenNotify(c) {
  const listener = await connected();
  try {
    await listener.query('LISTEN pg_probe_channel');
    const payload = new Promise((resolve) => listener.on('notification', (m) => resolve(m.payload)));
    await c.query("NOTIFY pg_probe_channel, 'hello'");
    assert.equal(await payload, 'hello');
  } finally {
    await listener.end();
  }
}

// Reads on replicas: each read right after the session's own write must see it.
async function readYourWrites(c) {
  for (let i = 500; i < 530; i++) {
    await c.query(`INSERT INTO ${table} (id, name) VALUES ($1, 'w')`, [i]);
    const { rows } = await c.query(`SELECT name FROM ${table} WHERE id = $1`, [i]);
    assert.deepEqual(rows, [{ name: 'w' }], `row ${i}`);
  }
}

const CHECKS = [setup, prepared, multiStatement, transactionAndSavepoint, cursorInTransaction,
  cursorInAutocommit, copy, errorThenMore, listenNotify, readYourWrites];

function limited(promise, name) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} took over ${CHECK_LIMIT_MS} ms`)), CHECK_LIMIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

(async () => {
  let failures = 0;
  const c = await limited(connected(), 'connect');
  for (const check of CHECKS) {
    try {
      await limited(check(c), check.name);
      console.log(`ok ${check.name}`);
    } catch (e) {
      failures += 1;
      console.log(`FAIL ${check.name}: ${e.message}`);
    }
  }
  await c.end();
  process.exit(failures);
})().catch((e) => {
  console.log(`FAIL connect: ${e.message}`);
  process.exit(1);
});
