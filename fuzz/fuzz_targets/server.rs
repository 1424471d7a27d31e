//! Fuzz target `server`: any bytes, read as a script for the login, inbound and transfer
//! state machines (see `vcom_server::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vcom_fuzz::server(data));
