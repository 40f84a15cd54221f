use super::*;
use crate::fanout::Combine;

fn planned(sql: &str) -> FanoutPlan {
    plan(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn shard_sql_is_rewritten_for_merging() {
    let cases = [
        (
            "SELECT a, b FROM t WHERE a > 1",
            "SELECT a, b FROM t WHERE a > 1",
        ),
        (
            "SELECT * FROM t ORDER BY b DESC LIMIT 5 OFFSET 10",
            "SELECT *, b AS pgsplit_sort_0 FROM t ORDER BY b DESC LIMIT 15",
        ),
        (
            "SELECT a AS x FROM t ORDER BY x, 1 OFFSET 3",
            "SELECT a AS x, a AS pgsplit_sort_0, a AS pgsplit_sort_1 FROM t ORDER BY x, 1",
        ),
        (
            "SELECT DISTINCT a FROM t ORDER BY a LIMIT 2",
            "SELECT DISTINCT a, a AS pgsplit_sort_0 FROM t ORDER BY a LIMIT 2",
        ),
        (
            "SELECT count(*), avg(x) FROM t",
            "SELECT count(*), sum(x) AS avg, count(x) AS pgsplit_avg_count_0 FROM t",
        ),
        (
            "SELECT g, AVG(x) AS m FROM t GROUP BY g ORDER BY m DESC LIMIT 3",
            "SELECT g, sum(x) AS m, count(x) AS pgsplit_avg_count_0 FROM t GROUP BY g",
        ),
        (
            "SELECT g, count(*) FROM t GROUP BY g, h ORDER BY sum(x)",
            "SELECT g, count(*), h AS pgsplit_group_1, sum(x) AS pgsplit_sort_1 FROM t GROUP BY g, h",
        ),
        (
            "SELECT count(x) FILTER (WHERE x > 0) FROM t",
            "SELECT count(x) FILTER (WHERE x > 0) FROM t",
        ),
    ];
    for (sql, shard_sql) in cases {
        assert_eq!(planned(sql).shard_sql(), shard_sql, "{sql}");
    }
}

#[test]
fn merge_specs_follow_the_statement() {
    let spec = planned("SELECT * FROM t ORDER BY b DESC, c NULLS FIRST LIMIT 5 OFFSET 10").spec;
    assert_eq!(spec.mode, Mode::Rows);
    assert_eq!((spec.hidden, spec.offset, spec.limit), (2, 10, Some(5)));
    assert_eq!(
        spec.order,
        vec![
            SortKey {
                column: ColumnAt::FromEnd(2),
                descending: true,
                nulls_first: true
            },
            SortKey {
                column: ColumnAt::FromEnd(1),
                descending: false,
                nulls_first: true
            },
        ]
    );
    let spec = planned("SELECT g, avg(x), max(y) FROM t GROUP BY 1 ORDER BY 2").spec;
    assert_eq!(
        spec.mode,
        Mode::Aggregate(vec![
            Combine::Key,
            Combine::Avg { count_column: 3 },
            Combine::Max,
            Combine::Count
        ])
    );
    assert_eq!(spec.order[0].column, ColumnAt::Index(1));
    assert_eq!(
        planned("SELECT DISTINCT a FROM t").spec.mode,
        Mode::Distinct
    );
    // sum(x) in ORDER BY is not the avg item, although avg runs on shards as sum(x).
    let spec = planned("SELECT avg(x) FROM t GROUP BY g ORDER BY sum(x)").spec;
    assert_eq!(spec.order[0].column, ColumnAt::Index(3));
}

#[test]
fn what_cannot_be_merged_is_refused_with_a_reason() {
    let cases = [
        ("SELECT count(DISTINCT a) FROM t", "DISTINCT aggregates"),
        (
            "SELECT g, count(*) FROM t GROUP BY g HAVING count(*) > 1",
            "HAVING",
        ),
        ("SELECT a, row_number() OVER () FROM t", "window functions"),
        ("SELECT a FROM t UNION SELECT a FROM u", "UNION"),
        (
            "SELECT * FROM (SELECT g, count(*) FROM t GROUP BY g) s",
            "plain table",
        ),
        ("SELECT * FROM t WHERE a IN (SELECT a FROM u)", "subqueries"),
        ("SELECT (SELECT max(a) FROM u) FROM t", "subqueries"),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
        ("SELECT * FROM t JOIN u ON t.a = u.a", "joins"),
        ("SELECT * FROM t, u", "joins"),
        ("SELECT 1", "without FROM"),
        ("SELECT * FROM generate_series(1, 3)", "table functions"),
        ("WITH c AS (SELECT 1) SELECT * FROM t", "WITH"),
        ("SELECT string_agg(a, ',') FROM t", "string_agg"),
        (
            "SELECT sum(a) + 1 FROM t",
            "only count, sum, min, max and avg",
        ),
        (
            "SELECT a, count(*) FROM t",
            "neither an aggregate nor a GROUP BY key",
        ),
        ("SELECT g, count(*) FROM t GROUP BY ROLLUP (g)", "ROLLUP"),
        ("SELECT DISTINCT ON (a) a, b FROM t", "DISTINCT ON"),
        ("SELECT DISTINCT a FROM t ORDER BY b", "with DISTINCT"),
        ("SELECT * FROM t ORDER BY 1", "name the column"),
        ("SELECT a FROM t LIMIT $1", "integer constant"),
        ("SELECT a FROM t ORDER BY a USING <", "USING"),
        (
            "SELECT g, count(*) FROM t GROUP BY g ORDER BY h",
            "GROUP BY key or an aggregate",
        ),
        ("INSERT INTO t VALUES (1)", "single SELECT"),
        ("SELECT 1; SELECT 2", "single SELECT"),
        ("SELEC 1", "cannot be fanned out"),
        ("SELECT * FROM t FETCH FIRST 3 ROWS ONLY", "FETCH"),
        ("SELECT a FROM t TABLESAMPLE BERNOULLI (10)", "TABLESAMPLE"),
    ];
    for (sql, reason) in cases {
        match plan(sql) {
            Ok(p) => panic!("{sql} was planned as {}", p.shard_sql()),
            Err(refusal) => {
                assert!(
                    refusal.message.contains(reason),
                    "{sql}: {}",
                    refusal.message
                );
                assert_eq!(refusal.code.0, "0A000", "{sql}");
            }
        }
    }
}
