//! The checks behind the fuzz targets in this directory, kept apart from libFuzzer so
//! that the workspace's tests run exactly what the fuzzer runs: the test package
//! (`vcom-tests`) compiles these same files and replays every committed `seed-*` file
//! of `corpus/<target>/` on each `cargo test` (`tests/tests/fuzz_regressions.rs`).
//! Every check panics when the code under test breaks one of its promises.
//!
//! - `server`: [`server`], the login, inbound and transfer state machines driven by a
//!   script, in process (`vcom_server::fuzzing`).
//! - `config`: [`config::check`], the configuration parser.
//! - `client`: [`client::check`], the client SDK's handling of a server's bytes, over
//!   an in-memory pipe (`vcom_client::Client::connect_over`).

pub mod client;
pub mod config;

/// The fuzz target `server`: runs `data` as a script against the server's state
/// machines (see `vcom_server::fuzzing::connections`).
pub fn server(data: &[u8]) {
    vcom_server::fuzzing::connections(data);
}
