//! Fuzz target `client`: a flags byte, then any bytes as what a server sends the SDK
//! from the login's answer on (see `vcom_fuzz::client`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vcom_fuzz::client::check(data);
});
