//! The `outpost` binary: parse the command line, run it, map errors to an exit code:
//! 0 success, 2 usage, 78 configuration (`EX_CONFIG`), 1 anything else.

use std::process::ExitCode;

fn main() -> ExitCode {
    match outpost_proxy::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", outpost_proxy::cli::describe(&error));
            ExitCode::from(outpost_proxy::cli::exit_code(&error))
        }
    }
}
