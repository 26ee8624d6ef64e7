//! `nimbus`: the server (`nimbus up`) and the command-line client of its API.
//!
//! The binary is the composition root: it alone knows every crate, reads the host
//! configuration, wires storage, runtimes, engine and API together, and maps errors
//! to one-line messages and exit codes.

mod cli;
mod client;
mod manifest;
mod server;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads() {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
