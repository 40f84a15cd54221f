//! `cargo +nightly fuzz run startup_packet`: the libFuzzer driver of [`pgsplit::fuzz::startup_packet`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::startup_packet(data));
