#!/usr/bin/env bash
# Check the workflows (and the action they use) with actionlint, installed
# by version into a cache directory when it is not on PATH.
set -euo pipefail
VERSION=1.7.7
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(command -v actionlint || true)"
if [ -z "$bin" ]; then
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/runbook-tools/actionlint-$VERSION"
  bin="$dir/actionlint"
  if [ ! -x "$bin" ]; then
    mkdir -p "$dir"
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) echo "no actionlint build for $(uname -m)" >&2; exit 1 ;; esac
    url="https://github.com/rhysd/actionlint/releases/download/v$VERSION/actionlint_${VERSION}_linux_$arch.tar.gz"
    curl -fsSL "$url" | tar -xz -C "$dir" actionlint
  fi
fi
cd "$root"
"$bin" -version | head -1
"$bin" .github/workflows/*.yml
