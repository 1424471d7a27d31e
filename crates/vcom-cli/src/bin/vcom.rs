//! `vcom`: the vCom command-line client.
fn main() {}
