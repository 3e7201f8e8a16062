//! The `podium` command line; the commands live in [`podium::cli`].

use std::process::ExitCode;

use clap::Parser;
use podium::cli::Cli;

/// mimalloc rather than the system allocator: rows of the inference table
/// (and request bodies) are allocated on the request threads and freed on
/// the writer thread, which glibc's malloc handles poorly (measured in
/// BENCHMARKS.md: +18% throughput at concurrency 64 and half the writer's
/// CPU per row).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODIUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
