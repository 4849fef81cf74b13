//! Helpers shared by the end-to-end tests in `tests/tests/`: locating the `attune` binary
//! and the shared data sets, running commands, and (in [`http`]) a served process with an
//! HTTP client.

pub mod http;

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
    bin
}

/// Runs `attune` with `args`, returning its output.
pub fn attune(args: &[&str]) -> Output {
    Command::new(attune_bin())
        .args(args)
        .output()
        .expect("attune runs")
}

/// The shared data directory (`../shared/data` beside the repository), if present.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is not present", p.display());
        None
    }
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
