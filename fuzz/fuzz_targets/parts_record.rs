#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haul::fuzzing::run("parts_record", data));
