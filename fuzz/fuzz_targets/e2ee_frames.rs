//! Fuzzes the e2ee frame reader and the transport's frame opening: bytes
//! as alice's transport frames to bob after the vectors' handshake, split
//! into reads of the size in byte 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uds_e2ee::fuzzing::frames(data);
});
