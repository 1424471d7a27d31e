//! The `vcom-store` specification, as tests against both backends: each test of the
//! shared modules runs once on [`vcom_store::SqliteStore`] (`<module>::sqlite::<test>`)
//! and once on [`vcom_store::PostgresStore`] (`<module>::postgres::<test>`), the latter
//! on a database created for it on the server named by `VCOM_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). `backup`, `crash` and the
//! file-level tests of `durability` are SQLite's own; `nodes` is PostgreSQL's.
//!
//! One test binary (modules below) so the crash test can re-run this same binary as its
//! child writer.

// The shared test bodies are generic functions that `on_both_backends!` calls from one
// `#[tokio::test]` per backend, so clippy's test exemption does not reach them: unwrap
// is what a test does with a result it expects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod backup;
mod crash;
mod devices;
mod durability;
mod groups;
mod lists;
mod messages;
mod nodes;
mod policy;
mod retention;
mod transfers;
mod users;
