//! Crash safety: a writer process is killed with SIGKILL at random moments; after each
//! kill the store must reopen cleanly with every acknowledged event present and in order.

use attune::crash_test::{run_crash_test, CrashTestOptions};
use std::time::Duration;

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = CrashTestOptions {
        exe: attune_tests::attune_bin(),
        dir: dir.path().to_path_buf(),
        rounds: 24,
        writers: 4,
        seed: 7,
        max_kill_after: Duration::from_millis(250),
        // Both kinds of check: what each round added, and the whole store every 8 rounds.
        full_check_every: 8,
    };
    let report = run_crash_test(&opts, |_, _| {}).expect("every acknowledged event survives");
    assert_eq!(report.rounds, 24);
    assert!(
        report.acks >= 24,
        "too few acknowledged appends: {}",
        report.acks
    );
    assert!(report.events > 0);
}
