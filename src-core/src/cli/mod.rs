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
    /// Train the attention model; writes weights, config.json and a model card to --out.
    Train(TrainArgs),
    /// Serve the engine over HTTP (REST, Prometheus metrics) until SIGTERM / Ctrl-C.
    Serve(ServeArgs),
    /// The whole system in one command: synthetic data, the shipped model, the service,
    /// and simulated users driving it over HTTP, with a live status line.
    Demo(DemoArgs),
    /// Replay logged sessions through fresh engines, one per strategy; compare them.
    Replay(ReplayArgs),
    /// Simulate users responding to the engine's slates; compare strategies on reward.
    Simulate(SimulateArgs),
    /// Write a consistent backup of a store to a file, while it is served or not.
    Backup(BackupArgs),
    /// Rebuild a store in a new directory from a backup file (checked end to end first).
    Restore(RestoreArgs),
    /// Rewrite a store's live data into new files and delete the old ones, so that
    /// forgotten users leave no byte behind (served or not).
    Compact(CompactArgs),
    /// Kill a writer with SIGKILL at random moments and check every acknowledged event survives.
    CrashTest(CrashTestArgs),
    /// (internal) Append events in a loop, printing acknowledgements; the crash test's child.
    #[command(hide = true)]
    AppendLoop(AppendLoopArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The store to back up. While `attune serve` (or `attune demo`) holds it, the backup is
    /// taken by that process, through the socket `DIR/backup.sock`.
    #[arg(long)]
    store: PathBuf,
    /// The backup file to write (must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The store to compact. While `attune serve` (or `attune demo`) holds it, that process
    /// compacts it, asked through `DIR/backup.sock`.
    #[arg(long)]
    store: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// The new store's directory (must not exist, or be empty).
    #[arg(long)]
    store: PathBuf,
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
    /// The purchase world: a cart becomes a purchase by the item's own hidden conversion
    /// rate (the same for every user, unrelated to what draws clicks), not by the user's
    /// affinity (`attune simulate --purchase-world` faces the same items).
    #[arg(long)]
    purchase_by_item: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: DataArgs,
    /// Model to evaluate (repeatable): pop, pop-recent, itemknn, markov, cohort, or
    /// seq:DIR for an attention-model checkpoint. With --cold-items: text, random,
    /// tag-overlap, blend (all four when none is named).
    #[arg(long = "model", required_unless_present = "cold_items")]
    models: Vec<String>,
    /// Cold-start evaluation: this share of the catalogue's items (0 < F < 1) becomes
    /// cold, unseen by every fitted model, and each user's first cold interaction is
    /// ranked among the cold items (docs/evaluation.md).
    #[arg(long = "cold-items", value_name = "FRACTION")]
    cold_items: Option<f64>,
    /// Seed of the choice of cold items.
    #[arg(long, default_value_t = 0, requires = "cold_items")]
    seed: u64,
    /// The text encoder's checkpoint directory (for the text and blend models).
    #[arg(long, value_name = "DIR", default_value = "models/minilm-l6")]
    encoder: PathBuf,
    /// What makes an item's text, comma-separated: title, tags, and attribute names.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "title,tags,brand,category,description"
    )]
    text_fields: String,
    /// Cut-off for HR and NDCG.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Precision of the item table seq:DIR models score the catalogue with: f32, f16,
    /// bf16 or int8, as `attune serve --score-dtype` (docs/benchmarks.md#score-dtype).
    #[arg(long, value_name = "DTYPE", default_value = "f32")]
    score_dtype: attune::model::fast::ScoreDtype,
    /// Which held-out target to rank: test (last item) or validation (the one before).
    #[arg(long, default_value = "test")]
    split: String,
    /// Also report what the seq:DIR models' task heads know: AUC of the like head on
    /// held-out ratings (like = at or above the model's threshold) and of the purchase
    /// head on held-out purchases, beside item popularity.
    #[arg(long)]
    heads: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where a command reads its data: files, a store, or the embedded synthetic default.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Dataset file(s) (with --format).
    #[arg(long, num_args = 1.., conflicts_with_all = ["store", "synthetic"], required_unless_present_any = ["store", "synthetic"])]
    pub data: Vec<PathBuf>,
    /// Format of --data: movielens, tsv, csv, seq, jsonl.
    #[arg(long, requires = "data")]
    pub format: Option<String>,
    /// Read every interaction in this store.
    #[arg(long, conflicts_with = "synthetic")]
    pub store: Option<PathBuf>,
    /// The embedded default data: `attune generate`'s default synthetic set, in memory.
    #[arg(long)]
    pub synthetic: bool,
    /// Skip invalid lines of --data instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Every item of the catalogue records (--data's or the store's) counts, with or
    /// without interactions: a model trained so knows the whole catalogue (items without
    /// interactions come after the others).
    #[arg(long, conflicts_with = "synthetic")]
    pub whole_catalogue: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: DataArgs,
    /// Output directory (e.g. models/NAME).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the training stored in --out (its `last/` state).
    #[arg(long)]
    pub resume: bool,
    /// Most epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Model width.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Self-attention blocks.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads (must divide --dim).
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Longest window of a user's history the model reads [default: from the data].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Dropout probability [default: from the data].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// AdamW learning rate [default: from the data].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Windows per batch [default: from the data].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed (initialisation, shuffling, dropout).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// 0 for the full softmax, N for a sampled softmax with N shared negatives.
    #[arg(long, default_value_t = 0)]
    pub negatives: usize,
    /// Loss weight of the like head (rating at or above 4), beside next-item's 1.
    #[arg(long, default_value_t = 0.1)]
    pub like_weight: f64,
    /// Loss weight of the purchase head, beside next-item's 1.
    #[arg(long, default_value_t = 0.1)]
    pub purchase_weight: f64,
    /// Stop after this many evaluations without a better validation NDCG@10 [default:
    /// from the data].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Evaluate every this many epochs [default: from the data].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Stop after this many minutes of training.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// 0: one window per user (its most recent --max-len positions). S > 0: users longer
    /// than --max-len also give earlier windows, each ending S positions before the last
    /// [default: from the data].
    #[arg(long)]
    pub window_stride: Option<usize>,
    /// After early stopping, train afresh for the best epoch count on everything before
    /// the test targets (validation targets included) and keep that model [default: from
    /// the data].
    #[arg(long, conflicts_with = "no_refit")]
    pub refit: bool,
    /// Never refit, whatever the data.
    #[arg(long)]
    pub no_refit: bool,
    /// Learning-rate schedule: constant, or linear / cosine decay to 0 at --epochs.
    #[arg(long, default_value = "constant")]
    pub lr_schedule: String,
    /// Warm start: initialise the item table from the text vectors of this sentence
    /// encoder (e.g. models/minilm-l6), projected to --dim by PCA, instead of at random.
    /// Needs item text (ml-100k u.item, ml-1m movies.dat, or a store's catalogue).
    #[arg(long, value_name = "DIR")]
    pub init_from_text: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Store directory (created if missing). Required here or in --config.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// A model checkpoint directory, or a directory of them (then `synthetic-default`, or
    /// the first by name, serves).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080, loopback]. Port 0 picks a free port.
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// File holding the admin token (at least 16 characters). Default: a token generated
    /// into the store on first start and printed once.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body, in bytes [default: 8388608].
    #[arg(long)]
    pub body_limit: Option<usize>,
    /// HTTP worker threads [default: 2].
    #[arg(long)]
    pub workers: Option<usize>,
    /// A label for people, shown in the console's header (`production`, `staging`)
    /// [default: local].
    #[arg(long)]
    pub environment: Option<String>,
    /// A TOML configuration file (see examples/attune.toml); flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The text encoder's checkpoint directory, behind the `text` source, similar items
    /// and search [default: models/minilm-l6 when fetched (scripts/fetch-encoder.sh)].
    #[arg(long, value_name = "DIR", conflicts_with = "no_encoder")]
    pub encoder: Option<PathBuf>,
    /// Serve without the text encoder (no `text` source, no search).
    #[arg(long)]
    pub no_encoder: bool,
    /// Precision of the item table the attention model scores the catalogue with: f32,
    /// f16, bf16 or int8 [default: f32, or `score_dtype` in --config]
    /// (docs/benchmarks.md#score-dtype).
    #[arg(long, value_name = "DTYPE")]
    pub score_dtype: Option<attune::model::fast::ScoreDtype>,
    /// Catalogues of at least this many items take the model's candidates from a graph
    /// index instead of scoring every item [default: 200000, or `ann_min_items` in
    /// --config] (docs/benchmarks.md#a-1m-item-catalogue).
    #[arg(long, value_name = "N")]
    pub ann_min_items: Option<usize>,
    /// How deep the graph index is searched: more, better recall, slower [default: 64,
    /// or `ann_ef` in --config].
    #[arg(long, value_name = "N")]
    pub ann_ef: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Store directory; filled with the default synthetic data when empty, reused after.
    #[arg(long, default_value = "data/demo-store")]
    pub store: PathBuf,
    /// Checkpoint directory, or a directory of them (`synthetic-default` serves).
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// Address of the service (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Recommendation requests per second from the simulated users.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0.0)]
    pub seconds: f64,
    /// Seconds after which the users' tastes change (0: never).
    #[arg(long, default_value_t = 60.0)]
    pub change_after: f64,
    /// Seed of the users' choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Admin token file (default: generated into the store, shown at every start).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The text encoder's checkpoint directory, behind the `text` source, similar items
    /// and search [default: models/minilm-l6 when fetched (scripts/fetch-encoder.sh)].
    #[arg(long, value_name = "DIR", conflicts_with = "no_encoder")]
    pub encoder: Option<PathBuf>,
    /// Run without the text encoder (no `text` source, no search).
    #[arg(long)]
    pub no_encoder: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Replay this store's event log (in log order; impressions are compared with the
    /// replay's slates).
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    pub store: Option<PathBuf>,
    /// Data set file(s) (with --format); events replayed in time order.
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Format of --data: movielens, tsv, csv, seq, jsonl.
    #[arg(long, requires = "data")]
    pub format: Option<String>,
    /// A strategy file (JSON); repeat to compare several. Default: the default strategy.
    #[arg(long = "strategy")]
    pub strategies: Vec<PathBuf>,
    /// Attention model checkpoint the engines serve (default: none, baselines only).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Precision of the item table the attention model scores the catalogue with: f32,
    /// f16, bf16 or int8 (docs/benchmarks.md#score-dtype).
    #[arg(long, value_name = "DTYPE", default_value = "f32")]
    pub score_dtype: attune::model::fast::ScoreDtype,
    /// Only events at or after this time: Unix seconds, or YYYY-MM-DD[THH:MM:SS] (UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Only events before this time.
    #[arg(long)]
    pub to: Option<String>,
    /// Events before this time warm the engines up (recorded and learned from, never
    /// ranked); the figures and windows cover the rest. Same forms as --from.
    #[arg(long, value_name = "TIME")]
    pub warm_until: Option<String>,
    /// Fine-tune the attention model every N interactions while replaying, as
    /// `finetune_every` does while serving (0: never; needs --model).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub finetune_every: u64,
    /// Slate size ranked before each positive event.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed of the engines (exploration).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write a self-contained HTML report (index.html, report.json) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Distinct users per round (recommendations asked together).
    #[arg(long, default_value_t = 64)]
    pub round: usize,
    /// How far an event may move ahead of earlier events of other users.
    #[arg(long, default_value_t = 4096)]
    pub lookahead: usize,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Recommendations per strategy.
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    /// Simulated users.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Catalogue size.
    #[arg(long, default_value_t = 500)]
    pub items: usize,
    /// Seed of the world, the users and their responses.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Slate size.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// A strategy file (JSON); repeat to compare several. Default: `adaptive` and `frozen`.
    #[arg(long = "strategy")]
    pub strategies: Vec<PathBuf>,
    /// Attention model checkpoint. Default: models/synthetic-default for the default world
    /// (500 items, seed 42), none otherwise.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Serve without the attention model (baselines only).
    #[arg(long, conflicts_with = "model")]
    pub no_model: bool,
    /// The purchase world: carts become purchases by each item's own hidden conversion
    /// rate, unrelated to what draws clicks, and purchases alone earn; the strategies (by
    /// default) are the adaptive learner with the task heads (`heads`) and without
    /// (`no-heads`). Default model: models/synthetic-purchase.
    #[arg(long)]
    pub purchase_world: bool,
    /// Share of the run after which the users' tastes change.
    #[arg(long, default_value_t = 0.5)]
    pub change_at: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
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
        Command::Train(a) => commands::train(a),
        Command::Serve(a) => commands::serve(a),
        Command::Demo(a) => commands::demo(a),
        Command::Replay(a) => commands::replay(a),
        Command::Simulate(a) => commands::simulate(a),
        Command::Backup(a) => commands::backup(a),
        Command::Restore(a) => commands::restore(a),
        Command::Compact(a) => commands::compact(a),
        Command::CrashTest(a) => commands::crash_test(a),
        Command::AppendLoop(a) => commands::append_loop(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", attune::error::report(e.as_ref()));
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
    // actix-http logs every malformed request a client sends as an error; those are the
    // client's, answered with a 4xx, and must not let anyone flood the log.
    let default = format!("{default},actix_http::h1::dispatcher=off");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
