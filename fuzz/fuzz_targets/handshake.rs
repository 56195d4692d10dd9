//! Fuzzes the intro-channel framer and both handshake state machines with
//! arbitrary bytes, split into reads and sprinkled with fds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uds_handshake::fuzzing::drive(data);
});
