//! Helpers shared by the end-to-end tests in `tests/tests/`: locating the `attune` binary
//! and the shared data sets, running commands, and (in [`http`]) a served process with an
//! HTTP client.

pub mod fuzz;
pub mod http;
pub mod raw;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `attune` binary of the current build profile (built by `cargo test --workspace`).
pub fn attune_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/attune
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile> directory");
    let bin = dir.join(format!("attune{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p attune` first)",
        bin.display()
    );
    // `cargo test -p attune-tests` alone does not rebuild the binary: a test run against
    // an old one would test old code.
    let built = modified(&bin);
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../src-core/src");
    if let Some(newer) = newest_file(&src).filter(|(t, _)| Some(*t) > built) {
        panic!(
            "{} is older than {}: run `cargo build -p attune` (or `cargo test --workspace`)",
            bin.display(),
            newer.1.display()
        );
    }
    bin
}

fn modified(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The most recently modified file under `dir`, with its time.
fn newest_file(dir: &std::path::Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_file(&path)
        } else {
            modified(&path).map(|t| (t, path))
        };
        if let Some(f) = found {
            if newest.as_ref().is_none_or(|n| f.0 > n.0) {
                newest = Some(f);
            }
        }
    }
    newest
}

/// Runs `attune` with `args`, returning its output.
pub fn attune(args: &[&str]) -> Output {
    Command::new(attune_bin())
        .args(args)
        .output()
        .expect("attune runs")
}

/// A file under the shared data directory (`../shared/data` beside the repository), if
/// present. A test without its data skips with a note, unless `ATTUNE_REQUIRE_DATA=1`
/// (set by `.ci/run`, where the data must be there): then it fails, so a run that lost
/// its data cannot pass by skipping the tests that check the reference figures.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !data_required(),
        "{} is not present and ATTUNE_REQUIRE_DATA=1: this test needs the shared data",
        p.display()
    );
    eprintln!("skipping: {} is not present", p.display());
    None
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default text encoder's checkpoint (`models/minilm-l6`, placed by
/// `scripts/fetch-encoder.sh`), if fetched. Without it the test skips with a note, unless
/// `ATTUNE_REQUIRE_TOOLS=1` (set by `.ci/run`, whose setup fetches it): then it fails.
pub fn encoder_dir() -> Option<PathBuf> {
    let p = repo().join("models/minilm-l6");
    if p.join("model.safetensors").exists() {
        return Some(p);
    }
    assert!(
        !env_flag("ATTUNE_REQUIRE_TOOLS"),
        "{} is not there and ATTUNE_REQUIRE_TOOLS=1: run scripts/fetch-encoder.sh",
        p.display()
    );
    eprintln!(
        "skipping: {} is not there (scripts/fetch-encoder.sh)",
        p.display()
    );
    None
}

/// Whether `ATTUNE_REQUIRE_DATA` asks for the shared data.
pub fn data_required() -> bool {
    env_flag("ATTUNE_REQUIRE_DATA")
}

/// Whether the environment variable `name` is set to `1`, `true` or `yes`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// An external checker on the PATH (`promtool`, `schemathesis`), if installed. Without it
/// the test that needs it skips with a note, unless `ATTUNE_REQUIRE_TOOLS=1` (set by
/// `.ci/run`, whose setup installs them): then it fails.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !env_flag("ATTUNE_REQUIRE_TOOLS"),
            "{name} is not installed and ATTUNE_REQUIRE_TOOLS=1"
        );
        eprintln!("skipping the {name} check: {name} is not installed");
    }
    found
}

/// Stdout of a successful run; panics with stderr otherwise.
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "attune failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
