//! `vcom`: the vCom command-line client. The command line is a fixed contract
//! (the README's contract); the code lives in the `vcom_cli::client` module.

fn main() -> std::process::ExitCode {
    vcom_cli::client::main()
}
