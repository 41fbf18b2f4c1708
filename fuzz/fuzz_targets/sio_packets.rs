//! Engine.IO/Socket.IO packet and WebSocket frame decoding; see `confab_sio::fuzzing::packets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab_sio::fuzzing::packets(data));
