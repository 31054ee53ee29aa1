#!/usr/bin/env bash
# A long run of the runbook fuzzer (tests/fuzz.rs), in release mode.
#   scripts/fuzz.sh [MUTANTS] [SEED]
# Defaults: 1,000,000 mutants and a seed from the clock. A failure names the
# seed and keeps each failing mutant under target/tmp/fuzz-failures/.
set -euo pipefail
cd "$(dirname "$0")/.."
mutants="${1:-1000000}"
seed="${2:-$(date +%s)}"
echo "fuzz: $mutants mutants, RUNBOOK_FUZZ_SEED=$seed"
RUNBOOK_FUZZ_MUTANTS="$mutants" RUNBOOK_FUZZ_SEED="$seed" \
  cargo test --locked --release --test fuzz -- --nocapture
