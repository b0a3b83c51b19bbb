//! The `outpost` binary: parse the command line, run it, map errors to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match outpost_proxy::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
