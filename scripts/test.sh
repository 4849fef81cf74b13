#!/usr/bin/env bash
# Every test of Attune, as CI runs it (.ci/run calls this script):
#   1. setup: system packages, ui/ npm packages, the console's build (scripts/setup.sh);
#   2. the console's unit tests (Vitest);
#   3. the Rust workspace: unit, integration, service, crash and CLI tests, and the
#      desktop panel's command tests;
#   4. the web console end to end in Chromium against a real `attune serve`;
#   5. the desktop app's smoke test in a real window under Xvfb.
# Screenshots of the UI tests land in target/ui-shots/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s ==\n' "$*"; }

step "setup"
scripts/setup.sh

step "console unit tests (vitest)"
npm --prefix ui test --silent

step "rust workspace (cargo test)"
cargo test --workspace --locked

step "web console end to end (chromium, real attune serve)"
cargo build -p attune --locked
npm --prefix ui run e2e

step "desktop smoke (tauri-driver, Xvfb)"
SMOKE_BUILD_UI=0 scripts/desktop-smoke.sh
