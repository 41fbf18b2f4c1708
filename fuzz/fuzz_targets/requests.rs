//! Every client→server payload parser over arbitrary bytes; see `confab::fuzzing::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab::fuzzing::requests(data));
