//! The fuzz targets on stable Rust: every input of the kept corpus (`fuzz/corpus/<target>/`),
//! then a fixed number of deterministic mutations of it (byte flips, truncations, insertions,
//! splices, corrupted length fields), go through each target of `pgsplit::fuzz`; none may
//! panic. An input that does is printed as a byte string, ready to become a regression test.
//! Longer, coverage-guided runs use the same functions with nightly: `cargo +nightly fuzz run
//! <target>` in `fuzz/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use pgsplit::fuzz::TARGETS;

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

/// SplitMix64: small, seeded, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
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
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(rng, &mut input, other);
    }
    input
}

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let at = rng.below(input.len() + 1);
    match rng.below(7) {
        0 if at < input.len() => input[at] ^= 1 << rng.below(8),
        1 if at < input.len() => input[at] = rng.next() as u8,
        2 => input.truncate(at),
        3 => input.insert(at, *rng.pick(INTERESTING_BYTES)),
        4 => {
            let end = at + rng.below(input.len() - at + 1);
            let copy = input[at..end].to_vec();
            input.splice(at..at, copy);
        }
        5 => {
            let from = rng.below(other.len() + 1);
            let end = from + rng.below(other.len() - from + 1);
            input.splice(at.., other[from..end].iter().copied());
        }
        _ => {
            let word = rng.pick(INTERESTING_LENGTHS).to_be_bytes();
            let end = (at + 4).min(input.len());
            input.splice(at..end, word);
        }
    }
}

/// Runs `target` on `input`; a panic comes back as its message.
fn run(target: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// The inputs that made `target` panic (corpus first, then mutations), each with its message.
fn crashes(name: &str, target: fn(&[u8])) -> Vec<String> {
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
    let mut rng = Rng(0x5067_7370_6c69_7400 ^ name.len() as u64);
    let started = Instant::now();
    for _ in 0..mutations() {
        if started.elapsed() > TIME_BUDGET {
            break;
        }
        let (seed, other) = (rng.pick(&seeds), rng.pick(&seeds));
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
