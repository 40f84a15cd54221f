//! `cargo +nightly fuzz run shard_plan`: the libFuzzer driver of [`pgsplit::fuzz::shard_plan`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgsplit::fuzz::shard_plan(data));
