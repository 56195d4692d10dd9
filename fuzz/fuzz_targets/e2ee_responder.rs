//! Fuzzes the e2ee responder handshake and the transport after it: bytes as
//! what the dialer sends (message 1, message 3, frames) to bob's responder
//! with the vectors' fixed keys, split into reads of the size in byte 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uds_e2ee::fuzzing::responder(data);
});
