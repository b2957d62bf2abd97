#!/usr/bin/env bash
# Runs every fuzz target (fuzz/) for a bounded time: scripts/fuzz.sh [SECONDS per target, default 20]
# Installs cargo-fuzz when missing. Stable toolchain: no sanitizer (`--sanitizer none`).
# FUZZ_BUILD=dev builds without optimisation (faster to build, slower to fuzz); the default is
# cargo-fuzz's optimised build with debug assertions. Crashes are kept in fuzz/artifacts/TARGET/
# and fail the run; new corpus entries go to a scratch copy, so the checked-in corpora stay small.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
build_flags=(--sanitizer none)
[ "${FUZZ_BUILD:-}" = dev ] && build_flags+=(--dev)
# Its own target dir: the fuzz build is instrumented, nothing in it is shared with the main build.
export CARGO_TARGET_DIR="$PWD/fuzz/target"
cd fuzz
cargo fuzz build "${build_flags[@]}"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/trustkeeper-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
failed=0
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target" "artifacts/$target"
  start=$(date +%s)
  if cargo fuzz run "${build_flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$target/" >"$scratch/$target.log" 2>&1; then
    runs=$(grep -Eo '^#[0-9]+' "$scratch/$target.log" | tail -1 | tr -d '#')
    echo "fuzz: $target: ok, ${runs:-0} runs in $(( $(date +%s) - start )) s"
  else
    failed=$((failed + 1))
    echo "fuzz: $target: FAILED after $(( $(date +%s) - start )) s; artifacts in fuzz/artifacts/$target/"
    tail -40 "$scratch/$target.log"
  fi
done
exit "$failed"
