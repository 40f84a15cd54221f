//! `cargo +nightly fuzz run hints`: the libFuzzer driver of [`pgsplit::fuzz::hints`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::hints(data));
