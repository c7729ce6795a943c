#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| layers_fuzz::targets::template(data));
