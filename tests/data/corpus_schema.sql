-- Fixture schema for tests/data/classify_corpus.txt. Run with psql on an empty database
-- (PostgreSQL 15) before the corpus: every corpus statement is valid and executable against it,
-- reads on a hot-standby replica, writes on the primary, in any order and any number of times.
--
-- pgsplit's configuration for the corpus declares read_only_fn as read-only:
--   [routing]
--   read_only_functions = ["read_only_fn"]
-- bump_counter() writes and pure_but_undeclared() is pure but not declared: both are writes
-- to pgsplit (default deny).

CREATE TABLE accounts (
    id integer PRIMARY KEY,
    owner text NOT NULL,
    balance numeric NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    tags text[] NOT NULL DEFAULT '{}',
    data jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE orders (
    id integer PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts (id),
    amount numeric NOT NULL,
    status text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    id integer PRIMARY KEY,
    order_id integer NOT NULL REFERENCES orders (id),
    sku text NOT NULL,
    qty integer NOT NULL,
    price numeric NOT NULL
);

CREATE TABLE counters (
    name text PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    message text,
    at timestamptz NOT NULL DEFAULT now()
);

-- Truncated, altered and clustered by the corpus; holds nothing anyone reads.
CREATE TABLE scratch (
    i integer PRIMARY KEY,
    note text
);

CREATE SCHEMA app;
CREATE TABLE app.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- Order ids come from order_seq (nextval only); setval is only ever called on scratch_seq.
CREATE SEQUENCE order_seq START 1000;
CREATE SEQUENCE scratch_seq;

CREATE VIEW account_totals AS
SELECT a.id, a.owner, coalesce(sum(o.amount), 0) AS total
FROM accounts a
LEFT JOIN orders o ON o.account_id = a.id
GROUP BY a.id, a.owner;

CREATE MATERIALIZED VIEW account_summary AS
SELECT owner, count(*) AS n, sum(balance) AS balance
FROM accounts
GROUP BY owner;

CREATE FUNCTION read_only_fn() RETURNS integer
LANGUAGE sql STABLE
AS 'SELECT count(*)::integer FROM accounts';

CREATE FUNCTION bump_counter() RETURNS bigint
LANGUAGE sql
AS $$
    INSERT INTO counters (name, value) VALUES ('bump', 1)
    ON CONFLICT (name) DO UPDATE SET value = counters.value + 1
    RETURNING value
$$;

CREATE FUNCTION pure_but_undeclared(x integer) RETURNS integer
LANGUAGE sql IMMUTABLE
AS 'SELECT x * 2';

CREATE PROCEDURE touch_counter()
LANGUAGE sql
AS $$ UPDATE counters SET value = value + 1 WHERE name = 'touch' $$;

INSERT INTO accounts (id, owner, balance, tags, data) VALUES
    (1, 'alice', 150.00, '{vip,early}', '{"tier": "gold", "score": 10}'),
    (2, 'bob', 40.50, '{early}', '{"tier": "silver", "score": 3}'),
    (3, 'carol', 0, '{}', '{}'),
    (4, 'Dave', 999.99, '{vip}', '{"tier": "gold", "a": 1}');

INSERT INTO orders (id, account_id, amount, status) VALUES
    (1, 1, 25.00, 'new'),
    (2, 1, 75.50, 'paid'),
    (3, 2, 10.00, 'paid'),
    (4, 4, 500.00, 'shipped');

INSERT INTO items (id, order_id, sku, qty, price) VALUES
    (1, 1, 'A-1', 1, 25.00),
    (2, 2, 'B-2', 2, 37.75),
    (3, 4, 'C-3', 5, 100.00);

INSERT INTO counters (name, value) VALUES ('bump', 0), ('touch', 0), ('corpus', 0);

INSERT INTO app.settings (key, value) VALUES ('theme', 'dark'), ('lang', 'en');

INSERT INTO scratch (i, note) VALUES (1, 'one');
