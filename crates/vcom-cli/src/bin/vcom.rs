//! `vcom`: the vCom command-line client. The command line is a fixed contract
//! (`DESIGN.md` section 7); the code lives in the `vcom_cli::client` module.

fn main() -> std::process::ExitCode {
    vcom_cli::client::main()
}
