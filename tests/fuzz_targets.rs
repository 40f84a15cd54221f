//! The fuzz targets on stable Rust: every input of the kept corpus (`fuzz/corpus/<target>/`),
//! then a fixed number of deterministic mutations of it (byte flips, truncations, insertions,
//! splices, corrupted length fields), go through each target of `pgsplit::fuzz`; none may
//! panic. An input that does is printed as a byte string, ready to become a regression test.
//! Longer, coverage-guided runs use the same functions with nightly: `cargo +nightly fuzz run
//! <target>` in `fuzz/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use pgsplit::fuzz::{TARGETS, Target};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Mutations per target (a few seconds); `PGSPLIT_FUZZ_MUTATIONS=N` runs more (or fewer).
const DEFAULT_MUTATIONS: usize = 20_000;

fn mutations() -> usize {
    std::env::var("PGSPLIT_FUZZ_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_MUTATIONS)
}

/// However slow the machine (or large the count asked for), a target stops mutating after
/// this long.
const TIME_BUDGET: Duration = Duration::from_secs(120);

/// Bytes that mean something to the parsers: NUL terminators, quotes, comment and dollar-quote
/// delimiters, tag bytes, and bytes that start multi-byte UTF-8 sequences.
const INTERESTING_BYTES: &[u8] = b"\0\xff\x7f\x80\xc3\xe2\xf0'\"/*-$;=,()\nQPBEDSXpdc ";

/// Tokens worth planting in text inputs: comment, quote and parameter syntax, hint keys,
/// clauses the planners rewrite, and numbers at the edges of their types.
const INTERESTING_TOKENS: &[&str] = &[
    "/*",
    "*/",
    "--",
    "/* pgsplit: ",
    "route=",
    "shard_key=",
    "max_lag=",
    "after=",
    "E'\\",
    "$$",
    "$1",
    "$0",
    "::",
    "'",
    "\"",
    "(",
    ")",
    ",",
    ";",
    " LIMIT ",
    " OFFSET ",
    " ORDER BY ",
    " GROUP BY ",
    " IN (",
    " = ",
    " OR ",
    " AND ",
    " UNION ",
    "SELECT ",
    " FROM ",
    " WHERE ",
    "EXPLAIN ROUTE ",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551616",
    "32768",
    "1e400",
    "0x",
    "ü",
    "𝄞",
];

/// Length words worth planting in binary inputs: the bounds the framing checks and values just
/// past them.
const INTERESTING_LENGTHS: &[i32] = &[
    0,
    3,
    4,
    5,
    7,
    8,
    9,
    1023,
    1024,
    1025,
    10_000,
    10_001,
    80_877_102,
    80_877_103,
    80_877_104,
    196_608,
    i32::MAX,
    -1,
    i32::MIN,
];

/// A random position or count in `0..n` (`n` > 0).
fn below(rng: &mut StdRng, n: usize) -> usize {
    rng.random_range(..n)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len())]
}

/// The corpus of one target: every file of its directory, sorted by name so runs repeat.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// One to four stacked mutations of `seed`, with `other` (another corpus input) to splice in.
fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..=below(rng, 4) {
        mutate_once(rng, &mut input, other);
    }
    input
}

fn mutate_once(rng: &mut StdRng, input: &mut Vec<u8>, other: &[u8]) {
    let at = below(rng, input.len() + 1);
    match below(rng, 8) {
        0 if at < input.len() => input[at] ^= 1 << below(rng, 8),
        1 if at < input.len() => input[at] = rng.random(),
        2 => input.truncate(at),
        3 => input.insert(at, *pick(rng, INTERESTING_BYTES)),
        4 => {
            let end = at + below(rng, input.len() - at + 1);
            let copy = input[at..end].to_vec();
            input.splice(at..at, copy);
        }
        5 => {
            let token = pick(rng, INTERESTING_TOKENS).as_bytes();
            input.splice(at..at, token.iter().copied());
        }
        6 => {
            let from = below(rng, other.len() + 1);
            let end = from + below(rng, other.len() - from + 1);
            input.splice(at.., other[from..end].iter().copied());
        }
        _ => {
            let word = pick(rng, INTERESTING_LENGTHS).to_be_bytes();
            let end = (at + 4).min(input.len());
            input.splice(at..end, word);
        }
    }
}

/// Runs `target` on `input`; a panic comes back as its message.
fn run(target: Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// The inputs that made `target` panic (corpus first, then mutations), each with its message.
fn crashes(name: &str, target: Target) -> Vec<String> {
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "the corpus of {name} is empty");
    let mut found = Vec::new();
    let mut check = |input: &[u8]| {
        if let Err(message) = run(target, input) {
            found.push(format!(
                "{name}: {message}\n  input: b\"{}\"",
                input.escape_ascii()
            ));
        }
    };
    seeds.iter().for_each(|seed| check(seed));
    // Seeded by the target's name: every run of a target tries the same inputs.
    let name_hash = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b));
    let mut rng = StdRng::seed_from_u64(name_hash);
    let started = Instant::now();
    for _ in 0..mutations() {
        if started.elapsed() > TIME_BUDGET {
            break;
        }
        let (seed, other) = (pick(&mut rng, &seeds), pick(&mut rng, &seeds));
        check(&mutate(&mut rng, seed, other));
    }
    found
}

fn assert_no_crash(name: &str) {
    let (_, target) = TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let found = crashes(name, *target);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(!corpus(name).is_empty(), "fuzz/corpus/{name} is empty");
        let source = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(source.exists(), "{} is missing", source.display());
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

#[test]
fn frontend_messages_never_panic() {
    assert_no_crash("frontend_messages");
}

#[test]
fn startup_packets_never_panic() {
    assert_no_crash("startup_packet");
}

#[test]
fn hints_never_panic() {
    assert_no_crash("hints");
}

#[test]
fn classification_never_panics() {
    assert_no_crash("classify");
}

#[test]
fn shard_keys_and_fan_out_plans_never_panic() {
    assert_no_crash("shard_plan");
}

#[test]
fn copy_rows_never_panic() {
    assert_no_crash("copy_rows");
}

#[test]
fn a_panic_is_caught_and_reported() {
    let target: Target = |data| assert!(data.is_empty(), "not empty");
    assert_eq!(run(target, b""), Ok(()));
    assert_eq!(run(target, b"x"), Err("not empty".to_string()));
}
