//! Persistence for the vCom server: the [`Store`] trait and its SQLite backend.
