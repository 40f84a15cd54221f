//! Nothing a client sends can panic the classifier, and what it cannot read goes to the
//! primary.

use super::super::Access;
use super::classified;

fn odd_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = [
        "'",
        "\"",
        "$$",
        "$tag$ never closed",
        "/*",
        "/* /* nested, unclosed */",
        "--",
        "E'\\",
        "U&'\\+FFFFFF'",
        "U&'\\D800'",
        "SELECT 'a",
        "SELECT \"a",
        ")",
        "(((",
        "SELECT (1",
        ";",
        "\0",
        "SELECT \0 1",
        "SELECT 1\0",
        "ＳＥＬＥＣＴ 1",
        "SELECT 'ü€𝄞'",
        "EXPLAINé ROUTE x",
        "explain\u{0}route",
        "EXPLAIN ROUTE /* unclosed",
        "TABLE",
        "TABLE;",
        "MOVE",
        "FETCH",
        "FETCH FROM",
        "MOVE ;",
        "PREPARE",
        "PREPARE TRANSACTION",
        "COMMIT PREPARED 'a' 'b'",
        "EXECUTE",
        "SET",
        "RESET",
        "COPY",
        "DEALLOCATE",
        "BEGIN ATOMIC SELECT 1; END",
        "SELECT set_config()",
        "SELECT pg_advisory_lock()",
        "SELECT ROW",
        "SELECT ARRAY",
        "WITH RECURSIVE",
        "SELECT * FROM ONLY",
        "SELECT * FROM only AS x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("(".repeat(100 * 1024));
    inputs.push(format!(
        "SELECT {}1{}",
        "(".repeat(50_000),
        ")".repeat(50_000)
    ));
    inputs.push(format!("SELECT {}1", "-".repeat(100_000)));
    inputs.push(format!("SELECT {}true", "NOT ".repeat(20_000)));
    inputs.push(format!("SELECT {}1", "1 + ".repeat(20_000)));
    inputs.push(format!("SELECT ARRAY{}", "[".repeat(20_000)));
    inputs.push(";".repeat(100_000));
    inputs.push("SELECT 1;".repeat(10_000));
    inputs.push(format!("SELECT '{}'", "a".repeat(200_000)));
    inputs.push(
        String::from_utf8_lossy(&[0xff, 0xfe, b'S', b'E', 0xc3, 0x28, 0xa0, 0xa1]).into_owned(),
    );
    inputs.push(String::from_utf8_lossy(b"SELECT \xe2\x28\xa1 FROM t").into_owned());
    inputs.push(String::from_utf8_lossy(&(0u8..=255).collect::<Vec<_>>()).into_owned());
    inputs
}

#[test]
fn odd_inputs_never_panic_and_unparsable_means_write() {
    let inputs = odd_inputs();
    assert!(inputs.len() >= 30);
    for input in &inputs {
        let got = classified(input);
        let shown: String = input.chars().take(40).collect();
        if !got.parsed {
            assert_eq!(got.access, Access::Write, "{shown:?}");
            assert!(got.write_reason.is_some(), "{shown:?}");
        }
        assert_eq!(
            got.access == Access::Write,
            got.write_reason.is_some(),
            "{shown:?}"
        );
    }
}

#[test]
fn many_statements_are_counted() {
    let got = classified(&"SELECT 1;".repeat(10_000));
    assert!(got.parsed);
    assert_eq!(got.statements, 10_000);
    assert_eq!(got.access, Access::Read);
}
