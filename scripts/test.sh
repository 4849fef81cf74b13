#!/usr/bin/env bash
# Every test of Attune, as CI runs it (.ci/run calls this script):
#   1. setup: system packages, ui/ npm packages, the console's build (scripts/setup.sh);
#   2. the console's unit tests (Vitest);
#   3. lint: rustfmt, and clippy on every target of the workspace (-D warnings);
#   4. the Rust workspace: unit, integration, service, crash and CLI tests, and the
#      desktop panel's command tests;
#   5. the web console end to end in Chromium against a real `attune serve`;
#   6. the desktop app's smoke test in a real window under Xvfb.
# Screenshots of the UI tests land in target/ui-shots/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s ==\n' "$*"; }

step "setup"
scripts/setup.sh

step "console unit tests (vitest)"
npm --prefix ui test --silent

step "lint (cargo fmt --check; clippy -D warnings on every workspace target)"
cargo fmt --all --check
# Clippy lints the workspace's crates while they are compiled for the tests (clippy-driver
# as the workspace's compiler wrapper), instead of a separate `cargo clippy` that would
# check every dependency again; a warning of any kind stops the run.
RUSTC_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER:-$(rustc --print sysroot)/bin/clippy-driver}
export RUSTC_WORKSPACE_WRAPPER
mkdir -p target
cargo test --workspace --all-targets --locked --no-run 2>&1 | tee target/build.log
if grep -E '^(warning|error)(\[|:)' target/build.log; then
  echo "lint: the build above has warnings (cargo clippy --workspace --all-targets shows them)" >&2
  exit 1
fi

step "rust workspace (cargo test)"
cargo test --workspace --locked

step "web console end to end (chromium, real attune serve)"
cargo build -p attune --locked
npm --prefix ui run e2e

step "desktop smoke (tauri-driver, Xvfb)"
SMOKE_BUILD_UI=0 scripts/desktop-smoke.sh
