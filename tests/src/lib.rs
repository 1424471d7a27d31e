//! Shared support for vCom's cross-crate integration tests.
//!
//! # Layout
//! - [`e2e`]: the end-to-end runner behind `cargo xtask e2e` (binary `vcom-e2e`).
//! - [`harness`]: an in-process server and raw TLS clients for integration tests.
//! - [`hexdump`]: annotated hex dumps of encoded packets, for golden snapshots.
//! - [`postgres`]: a fresh PostgreSQL database for each test that needs one.
//! - [`vectors`]: the golden vectors, one realistic value per packet and direction.
//! - [`strategies`]: proptest strategies for every packet, within the default limits.
//! - [`fuzz_check`]: the checks the fuzz target `decode` runs, compiled from
//!   `crates/vcom-protocol/fuzz/src/lib.rs` so tests replay exactly what the fuzzer does.

pub mod e2e;
#[path = "../../crates/vcom-protocol/fuzz/src/lib.rs"]
pub mod fuzz_check;
pub mod harness;
pub mod hexdump;
pub mod postgres;
pub mod strategies;
pub mod vectors;

/// A suffix no other test of any process uses (process id and the time in
/// nanoseconds), for names a test creates on shared services.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}_{nanos}", std::process::id())
}
