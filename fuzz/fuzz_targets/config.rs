//! Fuzz target `config`: any bytes, as a configuration file and as the keys of one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vcom_fuzz::config::check(data));
