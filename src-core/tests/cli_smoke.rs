//! Smoke test of the `attune` binary. Besides checking `--help`, having an integration test
//! here makes `cargo test` build the binary that the end-to-end tests in `tests/` run.

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_attune"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["import", "generate", "eval", "crash-test"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}
