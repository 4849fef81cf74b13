#!/usr/bin/env bash
# The whole system on this machine, with its control panel, on the embedded default
# (synthetic data generated into data/demo-store on the first run, the shipped model in
# models/, simulated users driving it):
#   - where there is a display ($DISPLAY or $WAYLAND_DISPLAY): the desktop panel,
#     `attune-panel`, which runs the engine in-process;
#   - else: `attune demo`, which serves the same panel as a web console and prints its
#     URL (http://127.0.0.1:8080/ui/) and the admin token.
# Installs what it needs first (scripts/setup.sh) and builds in release mode (a few
# minutes the first time on 2 cores). Arguments go to the program started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${ATTUNE_WEB:-0}" != 1 ]; then
  cargo build --release --locked -p attune-panel
  exec target/release/attune-panel "$@"
else
  cargo build --release --locked -p attune
  exec target/release/attune demo "$@"
fi
