//! The vCom client SDK: an async API for talking to a vCom server.
