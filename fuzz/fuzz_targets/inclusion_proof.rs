#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haul::fuzzing::run("inclusion_proof", data));
