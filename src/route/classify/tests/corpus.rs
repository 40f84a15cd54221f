//! Every line of tests/data/classify_corpus.txt classifies as its prefix says.

use super::super::Access;
use super::classified;

const CORPUS: &str = include_str!("../../../../tests/data/classify_corpus.txt");

/// (line number, expected access, statement text) for every statement line of the corpus.
fn corpus() -> Vec<(usize, Access, &'static str)> {
    let mut cases = Vec::new();
    for (i, line) in CORPUS.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (access, sql) = match line.split_once('|') {
            Some(("R", sql)) => (Access::Read, sql),
            Some(("W", sql)) => (Access::Write, sql),
            _ => panic!("corpus line {}: neither `R|` nor `W|`: {line}", i + 1),
        };
        cases.push((i + 1, access, sql));
    }
    cases
}

#[test]
fn corpus_has_at_least_220_statements() {
    assert!(corpus().len() >= 220, "{} statements", corpus().len());
}

#[test]
fn every_corpus_statement_classifies_as_expected() {
    let mut wrong = Vec::new();
    for (line, expected, sql) in corpus() {
        let got = classified(sql);
        if got.access != expected {
            wrong.push(format!(
                "line {line}: expected {expected:?}, got {:?} ({:?}): {sql}",
                got.access, got.write_reason
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Reads in the corpus parse: a read is never a read by accident of a parse failure (those
/// are writes), and a corpus read that stopped parsing would silently become a write.
#[test]
fn corpus_reads_parse() {
    let unparsed: Vec<_> = corpus()
        .into_iter()
        .filter(|(_, access, sql)| *access == Access::Read && !classified(sql).parsed)
        .map(|(line, _, sql)| format!("line {line}: {sql}"))
        .collect();
    assert!(unparsed.is_empty(), "{}", unparsed.join("\n"));
}
