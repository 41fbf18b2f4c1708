//! Token verification with arbitrary tokens and a fixed key; see `confab::fuzzing::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab::fuzzing::jwt(data));
