//! Fuzz target `decode`: any bytes, offered to both decoders and to the framing codec.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vcom_protocol_fuzz::decode_everywhere(data));
