//! The vCom server core: TLS, sessions, routing, list sync, transfers and admin.
