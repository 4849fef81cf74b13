//! Command-line parsing and dispatch for the `attune` binary.
//!
//! Each subcommand lives in its own module; they parse flags, call the library, draw
//! progress bars and print results. Errors print as `error: ...` with a non-zero exit.

mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Attune: a real-time, adaptive recommendation engine.
#[derive(Debug, Parser)]
#[command(name = "attune", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import dataset files into a store.
    Import(ImportArgs),
    /// Generate synthetic data (the embedded default) into a JSONL file or a store.
    Generate(GenerateArgs),
    /// Evaluate models under the full-ranking leave-last-out protocol.
    Eval(EvalArgs),
    /// Kill a writer with SIGKILL at random moments and check every acknowledged event survives.
    CrashTest(CrashTestArgs),
    /// (internal) Append events in a loop, printing acknowledgements; the crash test's child.
    #[command(hide = true)]
    AppendLoop(AppendLoopArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Store directory (created if missing).
    #[arg(long)]
    store: PathBuf,
    /// Input format: movielens, tsv, csv, seq, jsonl.
    #[arg(long)]
    format: String,
    /// Import the valid lines and report the invalid ones instead of refusing the file.
    #[arg(long)]
    skip_invalid: bool,
    /// Files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write JSONL (catalogue records, then events) to this file.
    #[arg(long, conflicts_with = "store", required_unless_present = "store")]
    out: Option<PathBuf>,
    /// Append the generated data to this store.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Number of catalogue items.
    #[arg(long, default_value_t = 500)]
    items: usize,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Mean sessions per user.
    #[arg(long)]
    sessions: Option<f64>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset file(s) to evaluate on (with --format).
    #[arg(long, num_args = 1.., conflicts_with_all = ["store", "synthetic"], required_unless_present_any = ["store", "synthetic"])]
    data: Vec<PathBuf>,
    /// Evaluate on the embedded default data: `attune generate`'s default synthetic set,
    /// generated in memory.
    #[arg(long, conflicts_with = "store")]
    synthetic: bool,
    /// Format of --data: movielens, tsv, csv, seq, jsonl.
    #[arg(long, requires = "data")]
    format: Option<String>,
    /// Evaluate on every interaction in this store.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Model to evaluate (repeatable): pop, pop-recent, itemknn, markov, cohort.
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    /// Cut-off for HR and NDCG.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Which held-out target to rank: test (last item) or validation (the one before).
    #[arg(long, default_value = "test")]
    split: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Import lines that are valid and skip the rest when reading --data.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Debug, Args)]
pub struct CrashTestArgs {
    /// Number of kill-and-reopen rounds.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Store directory to torture (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Concurrent writer threads in the child.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Random seed for the kill times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
pub struct AppendLoopArgs {
    #[arg(long)]
    store: PathBuf,
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Tag making this run's ids unique.
    #[arg(long)]
    tag: String,
}

/// Parses the command line, runs the command, maps errors to exit code 1 (2 for usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Import(a) => commands::import(a),
        Command::Generate(a) => commands::generate(a),
        Command::Eval(a) => commands::eval(a),
        Command::CrashTest(a) => commands::crash_test(a),
        Command::AppendLoop(a) => commands::append_loop(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
