//! Shared support for vCom's cross-crate integration tests.
