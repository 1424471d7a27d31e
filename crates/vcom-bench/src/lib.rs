//! `vcom-bench`: a load generator for vCom servers, like `redis-benchmark` or
//! `emqtt-bench`.
//!
//! - `vcom-bench run WORKLOAD --server HOST:PORT --insecure-pin SHA256`: one workload
//!   against a running server; prints its figures.
//! - `vcom-bench relay`: the limit, a minimal vCom relay that stores nothing.
//! - `vcom-bench suite --server-bin PATH [--peers] [--smoke]`: every workload against
//!   vcom-server, the relay and (with `--peers`) Mosquitto, InspIRCd and Prosody,
//!   alternated, then the report (`cargo xtask bench` runs this).
//! - `vcom-bench report --results FILE [--doc FILE]`: renders a results file again.
//! - `vcom-bench soak --server-bin PATH --minutes N`: vcom-server under a steady load
//!   with periodic reconnects for N minutes; fails if a message is lost or the server's
//!   memory keeps growing (`cargo xtask soak` runs this).
//!
//! Load goes to the addresses given; the suite starts every server itself on 127.0.0.1.
//! Every loop is bounded in count and time.
//!
//! # Layout
//! - `wire`: what every protocol under test provides ([`wire::Protocol`]), payloads,
//!   connecting from spread loopback addresses.
//! - `vcom`: the vCom protocol for the workloads, one client key per user.
//! - `relay`: the no-store relay.
//! - `workloads`: connections, direct messages, group fan-out, offline backlog, files.
//! - `target`: starting and stopping the servers under test.
//! - `peers`: Mosquitto, InspIRCd and Prosody, started side by side, and minimal
//!   clients of their protocols.
//! - `suite`: the alternated runs behind `cargo xtask bench`.
//! - `soak`: the long run behind `cargo xtask soak`, and its memory verdict.
//! - `results`: the measurements, as `results.json` holds them.
//! - `report`: the terminal table, the generated part of `docs/benchmarks.md`, plots.

pub mod peers;
pub mod relay;
pub mod report;
pub mod results;
pub mod soak;
pub mod suite;
pub mod target;
pub mod vcom;
pub mod wire;
pub mod workloads;
