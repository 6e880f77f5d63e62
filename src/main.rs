//! The `lifeboat` command: parses arguments, runs one verb, prints the result, and turns
//! errors into one line on stderr and a documented exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`lifeboat list | head`), like other Unix tools, instead
    // of panicking on the next print.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
