//! Fuzzes the strict decoder: one-shot, incremental (split at a point chosen
//! from the input), and re-encoding of whatever is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uds_syrup::fuzzing::decode_one(data);
});
