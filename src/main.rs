//! The `lifeboat` command: parses arguments, runs one verb, prints the result, and turns
//! errors into one line on stderr and a documented exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
