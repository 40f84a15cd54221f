use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;
use crate::shard::KeyType;

fn tables() -> HashMap<String, ShardedTable> {
    let table = |key: &str, key_type| ShardedTable {
        key_column: key.into(),
        key_type,
        map: 0,
    };
    HashMap::from([
        ("users".to_owned(), table("id", KeyType::Int8)),
        ("orders".to_owned(), table("user_id", KeyType::Int8)),
        ("tenants".to_owned(), table("tenant", KeyType::Uuid)),
        ("Shops".to_owned(), table("Region", KeyType::Text)),
    ])
}

fn extract_sql(sql: &str) -> Extraction {
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let [statement] = statements.as_slice() else {
        panic!("one statement: {sql}");
    };
    extract(statement, &tables())
}

fn assert_cases(cases: &[(&str, Extraction)]) {
    for (sql, expected) in cases {
        assert_eq!(&extract_sql(sql), expected, "{sql}");
    }
}

fn lit(text: &str) -> KeyRef {
    KeyRef::Literal(text.into())
}

fn keys(list: &[KeyRef]) -> Extraction {
    Extraction::Keys(list.to_vec())
}

#[test]
fn single_keys_in_where() {
    let cases = [
        ("SELECT * FROM users WHERE id = 42", keys(&[lit("42")])),
        ("SELECT * FROM users WHERE 42 = id", keys(&[lit("42")])),
        ("SELECT * FROM users WHERE id = -7", keys(&[lit("-7")])),
        ("SELECT * FROM users WHERE id = '42'", keys(&[lit("42")])),
        (
            "SELECT * FROM users WHERE id = $1",
            keys(&[KeyRef::Param(1)]),
        ),
        (
            "SELECT * FROM users WHERE id = $2::int8",
            keys(&[KeyRef::Param(2)]),
        ),
        ("SELECT * FROM users WHERE users.id = 1", keys(&[lit("1")])),
        (
            "SELECT * FROM public.users u WHERE u.id = 1",
            keys(&[lit("1")]),
        ),
        ("SELECT * FROM users WHERE (id = 1)", keys(&[lit("1")])),
        (
            "SELECT name FROM users WHERE ID = 1 ORDER BY name LIMIT 5",
            keys(&[lit("1")]),
        ),
        (
            "SELECT * FROM tenants WHERE tenant = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
            keys(&[lit("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]),
        ),
        (
            "SELECT * FROM \"Shops\" WHERE \"Region\" = 'eu'",
            keys(&[lit("eu")]),
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn and_keeps_a_restriction_and_or_unions() {
    let cases = [
        (
            "SELECT * FROM users WHERE id = 1 AND name = 'x'",
            keys(&[lit("1")]),
        ),
        (
            "SELECT * FROM users WHERE name = 'x' AND id = $1 AND age > 3",
            keys(&[KeyRef::Param(1)]),
        ),
        (
            "SELECT * FROM users WHERE id IN (1, 2) AND id = 2",
            keys(&[lit("2")]),
        ),
        (
            "SELECT * FROM users WHERE id = 1 OR id = 2",
            keys(&[lit("1"), lit("2")]),
        ),
        (
            "SELECT * FROM users WHERE (id = 1 OR id IN (2, $3)) AND active",
            keys(&[lit("1"), lit("2"), KeyRef::Param(3)]),
        ),
        (
            "SELECT * FROM users WHERE id IN (1, 2, 3)",
            keys(&[lit("1"), lit("2"), lit("3")]),
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn anything_uncertain_has_no_key() {
    for sql in [
        "SELECT * FROM users",
        "SELECT * FROM users WHERE name = 'x'",
        "SELECT * FROM users WHERE id = 1 OR name = 'x'",
        "SELECT * FROM users WHERE id <> 1",
        "SELECT * FROM users WHERE id > 1",
        "SELECT * FROM users WHERE id NOT IN (1, 2)",
        "SELECT * FROM users WHERE id IN (1, other)",
        "SELECT * FROM users WHERE id = ANY($1)",
        "SELECT * FROM users WHERE id = other_id",
        "SELECT * FROM users WHERE id = 5.7::int",
        "SELECT * FROM users WHERE id = 5.5",
        "SELECT * FROM users WHERE id = 'abc'",
        "SELECT * FROM users WHERE id = 1 + 1",
        "SELECT * FROM users WHERE x.id = 1",
        "SELECT * FROM users u WHERE users.id = 1",
        "SELECT * FROM users u JOIN countries c ON c.code = u.country WHERE u.id = 1",
        "SELECT * FROM users WHERE id = 1 AND id IN (SELECT user_id FROM orders)",
        "SELECT * FROM users WHERE id = 1 UNION SELECT * FROM users WHERE id = 2",
        "WITH x AS (SELECT 1) SELECT * FROM users WHERE id = 1",
        "SELECT * FROM users, orders WHERE users.id = 1 AND orders.user_id = 1",
        "SELECT * INTO copy FROM users WHERE id = 1",
        "UPDATE users SET id = 2 WHERE id = 1",
        "UPDATE users SET name = 'x' FROM countries WHERE users.id = 1",
        "UPDATE users SET name = 'x'",
        "DELETE FROM users",
        "DELETE FROM users USING countries WHERE users.id = 1",
        "INSERT INTO users VALUES (1, 'x')",
        "INSERT INTO users (name) VALUES ('x')",
        "INSERT INTO users (id, name) VALUES (DEFAULT, 'x')",
        "INSERT INTO users (id, name) VALUES (1, 'x'), (nextval('s'), 'y')",
        "INSERT INTO users (id, name) SELECT id, name FROM staging",
        "COPY users FROM STDIN",
        "TRUNCATE users",
    ] {
        assert_eq!(extract_sql(sql), Extraction::NoKey, "{sql}");
    }
}

#[test]
fn statements_without_sharded_tables_are_not_sharded() {
    for sql in [
        "SELECT 1",
        "SELECT * FROM countries WHERE code = 'fr'",
        "INSERT INTO countries (code) VALUES ('fr')",
        "SET search_path = public",
        "COPY countries FROM STDIN",
        "SELECT * FROM \"users_archive\" WHERE id = 1",
        "SELECT * FROM shops WHERE region = 'eu'",
    ] {
        assert_eq!(extract_sql(sql), Extraction::NotSharded, "{sql}");
    }
}

#[test]
fn writes_with_a_key() {
    let cases = [
        (
            "UPDATE users SET name = 'x' WHERE id = 7",
            keys(&[lit("7")]),
        ),
        (
            "UPDATE users AS u SET name = $1 WHERE u.id = $2",
            keys(&[KeyRef::Param(2)]),
        ),
        (
            "DELETE FROM users WHERE id IN (1, 2)",
            keys(&[lit("1"), lit("2")]),
        ),
        (
            "DELETE FROM orders WHERE user_id = $1 AND total > 10",
            keys(&[KeyRef::Param(1)]),
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn inserts_give_one_key_per_row_in_order() {
    let cases = [
        (
            "INSERT INTO users (id, name) VALUES (1, 'a')",
            keys(&[lit("1")]),
        ),
        (
            "INSERT INTO users (name, id) VALUES ('a', 3), ('b', -4), ('c', $1)",
            keys(&[lit("3"), lit("-4"), KeyRef::Param(1)]),
        ),
        (
            "INSERT INTO users (id, name) VALUES (1, 'a'), (1, 'b') ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id",
            keys(&[lit("1"), lit("1")]),
        ),
        (
            "INSERT INTO orders (user_id, total) VALUES ($1, $2), ($3, $4)",
            keys(&[KeyRef::Param(1), KeyRef::Param(3)]),
        ),
    ];
    assert_cases(&cases);
}
