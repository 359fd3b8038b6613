use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use consumer::commands::options::Cli;
use tracing_subscriber::EnvFilter;

// glibc's malloc, not mimalloc (which the producer and the Lambda function use): polling
// 500,000 events, mimalloc ran no faster (1.7-1.9 s against 1.65 s) and peaked at 124-174 MiB
// against 76 MiB, as each thread's heap kept what its batches had freed.
fn main() -> ExitCode {
    // The batch step's CPU work and the embedded stream's file reads run on tokio's blocking
    // threads: as many as there are cores, not tokio's default of up to 512. Each thread's
    // malloc arena keeps the high-water mark of the batches it worked on: with a third blocking
    // thread and the reads on the async workers, `consumer poll` peaked at 70-73 MiB on 500,000
    // plain records; like this, at 60-64 MiB. What else runs there (the AWS SDK's DNS lookups
    // and config files, DataFusion's file reads) may wait for a batch step: milliseconds.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        // On a terminal the progress line shows what the info lines would: warnings only
        // (RUST_LOG overrides).
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(if std::io::stderr().is_terminal() {
                "warn"
            } else {
                "info"
            })
        }))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match consumer::commands::app::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output has all it wanted (`| head`): end quietly, as `cat`
        // and `rg` do.
        Err(error) if is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `error` comes from writing to a pipe whose reader has gone.
fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
