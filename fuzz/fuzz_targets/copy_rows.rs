//! `cargo +nightly fuzz run copy_rows`: the libFuzzer driver of [`pgsplit::fuzz::copy_rows`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::copy_rows(data));
