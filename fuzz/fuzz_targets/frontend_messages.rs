//! `cargo +nightly fuzz run frontend_messages`: the libFuzzer driver of [`pgsplit::fuzz::frontend_messages`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::frontend_messages(data));
