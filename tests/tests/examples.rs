//! The host-program examples build and run: one async, one blocking.

use std::process::Command;

fn example(name: &str) -> std::path::PathBuf {
    let bin = attune_tests::attune_bin();
    let dir = bin
        .parent()
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        dir.is_file(),
        "{} is missing: `cargo test --workspace` builds the examples of the attune crate",
        dir.display()
    );
    dir
}

/// Runs an example, asserts it succeeded, and returns its standard output.
fn run(name: &str) -> String {
    let out = Command::new(example(name)).output().expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_blocking_host_example_runs() {
    let stdout = run("embed_blocking");
    assert!(stdout.contains("after clicking i7:"), "{stdout}");
    assert!(stdout.contains("bob's session: 5 steps"), "{stdout}");
}

#[test]
fn the_async_host_example_runs() {
    let stdout = run("embed_async");
    assert!(stdout.contains("alice bought"), "{stdout}");
    assert!(stdout.contains("1 recommendations, 5 events"), "{stdout}");
}
