//! `xcr`: the command line. Runs the same use cases the Lambda functions run, against whatever
//! the environment points at (the local stack from `.xcr/local.env`, LocalStack, or real clouds).
//!
//! Each subcommand lives in its own module and returns `Result<Exit, Failure>`: the exit code
//! table is [`exit::Exit`], and a failure is said once, here ([`print::failure`]). Each command
//! loads only the configuration it uses (`Needs` in its module). Adding a subcommand: a variant
//! in [`Command`], its module, and one arm in [`run`] and in [`Command::json`].

mod audit;
mod exit;
mod jobs;
mod logs;
mod object;
mod print;
mod queue;
mod serve;

use clap::{Parser, Subcommand};
use exit::{Exit, Failure};
use logs::LogFormat;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xcr", version, about = "Replicate S3 objects into Google Cloud Storage", long_about = None)]
#[command(after_help = "Exit codes: 0 done; 1 failed (or drift found, or busy: try again); 2 bad usage or \
configuration; 3 what you named does not exist; 4 did not finish (audit).")]
struct Cli {
    /// Logs on stderr: short lines for a person (warnings, errors, notes) or one JSON object
    /// per event. Default: human on a terminal, json otherwise (pipes, files, CI, Lambda).
    #[arg(long, global = true, env = "XCR_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one S3 object to GCS, streamed and verified, and print the outcome.
    Replicate(object::ReplicateArgs),
    /// Copy a bucket (or a prefix) to GCS from this machine: list, compare and copy in one
    /// process with the functions' engine, ledger and allowlist. Exit 0 all in place, 1 an
    /// object failed, 2 bad usage or configuration, 4 a listing failed.
    Copy(xcr::entry::copy::cli::CopyArgs),
    /// Run the replicate function on the local queue, as Lambda's SQS event source mapping does.
    Pump(queue::PumpArgs),
    /// What the ledger knows about one object at each destination its routing rules give
    /// (outcome, GCS generation, size, CRC32C, source version and ETag, when, lag, or the last
    /// failure). Exit 3 when nothing is recorded for it.
    Status(object::StatusArgs),
    /// Drift audit: compare S3 with GCS key by key (size, checksum, content type, user metadata)
    /// and report what is missing, different, extra or unverifiable. Exit 0 no drift, 1 drift
    /// found, 2 bad usage or configuration, 4 the audit could not finish.
    Audit(audit::AuditArgs),
    /// Dead-letter queue operations.
    Dlq {
        #[command(subcommand)]
        command: queue::DlqCommand,
    },
    /// Migration jobs: copy what is already in a bucket (or a manifest).
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Serve the HTTP API (the api function's very Router) on this machine.
    Serve(serve::ServeArgs),
}

impl Command {
    /// Whether the command's result is JSON on stdout (`--json`): then so is its failure.
    fn json(&self) -> bool {
        match self {
            Self::Replicate(a) => a.json,
            Self::Copy(a) => a.json,
            Self::Pump(a) => a.json,
            Self::Status(a) => a.json,
            Self::Audit(a) => a.json,
            Self::Dlq { command } => command.json(),
            Self::Jobs { command } => command.json(),
            Self::Serve(_) => false,
        }
    }

    /// Whether the command prints each copy's outcome itself.
    fn reports_tasks(&self) -> bool {
        matches!(self, Self::Replicate(_) | Self::Copy(_))
    }
}

async fn run(command: Command) -> Result<Exit, Failure> {
    match command {
        Command::Replicate(args) => object::replicate(args).await,
        Command::Status(args) => object::status(args).await,
        Command::Pump(args) => queue::pump(args).await,
        Command::Dlq { command } => queue::dlq(command).await,
        Command::Audit(args) => audit::audit(args).await,
        Command::Jobs { command } => jobs::run(command).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Copy(_) => Err(Failure::usage("xcr copy runs from main")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = LogFormat::choose(cli.log_format);
    format.init(cli.command.reports_tasks());
    let json = cli.command.json();
    // `xcr copy` prints its summary and failures itself, with the same exit codes.
    if let Command::Copy(args) = cli.command {
        return xcr::entry::copy::cli::command(args).await;
    }
    match run(cli.command).await {
        Ok(exit) => exit.into(),
        Err(f) => print::failure(&f, format, json),
    }
}
