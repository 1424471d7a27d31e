//! The `vcom-store` specification, as tests against [`vcom_store::SqliteStore`].
//!
//! One test binary (modules below) so the crash test can re-run this same binary as its
//! child writer.

mod support;

mod backup;
mod crash;
mod devices;
mod durability;
mod groups;
mod lists;
mod messages;
mod policy;
mod retention;
mod transfers;
mod users;
