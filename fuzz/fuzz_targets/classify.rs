//! `cargo +nightly fuzz run classify`: the libFuzzer driver of [`pgsplit::fuzz::classify_sql`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::classify_sql(data));
