//! Fuzzes the intro-channel framer on its own: a script of reads, each with
//! its bytes and a batch of stand-in fds, checking on the way that every fd
//! is returned or closed exactly once and that offsets and raw bytes add up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uds_handshake::fuzzing::intro_channel(data);
});
