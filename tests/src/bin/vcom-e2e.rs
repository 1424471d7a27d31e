//! `vcom-e2e`: plays the end-to-end scenarios against the real `vcom-server` program
//! and checks packet coverage. Run it through `cargo xtask e2e`, which builds the
//! programs first; see `vcom_tests::e2e` for what it does.
//!
//! Exit codes: 0 every check passed, 1 a check failed, 2 bad usage or the runner
//! itself could not work.

use std::process::ExitCode;

use vcom_tests::e2e::{self, Request};

fn main() -> ExitCode {
    let request = match Request::parse(std::env::args().skip(1)) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("vcom-e2e: {e:#}");
            return ExitCode::from(2);
        }
    };
    let options = match request {
        Request::List => {
            for scenario in e2e::SCENARIOS {
                println!("{}", scenario.name);
            }
            return ExitCode::SUCCESS;
        }
        Request::Run(options) => options,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vcom-e2e: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(e2e::run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("vcom-e2e: {e:#}");
            ExitCode::from(2)
        }
    }
}
