//! `vcom-server`: runs and administers a vCom server.
fn main() {}
