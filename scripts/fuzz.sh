#!/usr/bin/env bash
# Fuzzes the parsers and decoders with cargo-fuzz (libFuzzer): the SSE parser, the Bedrock
# event-stream decoder, every codec's stream translator and response decoder, the request
# parser and the config loader (targets in fuzz/fuzz_targets, shared code in fuzz/harness.rs).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# Each target starts from the committed corpus (fuzz/corpus/<target>) and writes what it finds
# to a scratch corpus in the fuzz target dir; afterwards only the inputs that add coverage are
# merged into fuzz/corpus (libFuzzer -merge=1: nothing committed is deleted). Commit them, and
# `cargo test --test fuzz_corpus` replays them in CI. A crash leaves its input in
# fuzz/artifacts/<target>. Instrumented builds differ from normal ones, so they get their own
# target dir. Uses the nightly toolchain when installed, else stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR="${SIGNALBOX_FUZZ_TARGET_DIR:-$HOME/.cache/signalbox-fuzz-target}"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sse eventstream stream response request config)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
# No sanitizer: the code under test is safe Rust (panics and aborts are what we look for), and
# an ASan build of the whole dependency tree is several times slower to build and to run.
fuzz=(fuzz run --sanitizer none --debug-assertions)

for t in "${targets[@]}"; do
  "${cargo[@]}" fuzz build --sanitizer none --debug-assertions "$t"
done

host=$(rustc -vV | sed -n 's/^host: //p')
summary=()
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  scratch="$CARGO_TARGET_DIR/corpus/$t"
  mkdir -p "$scratch"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  echo "== $t: ${secs}s"
  if ! "${cargo[@]}" "${fuzz[@]}" "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    status=1
    echo "!! $t found a crash; see $log and fuzz/artifacts/$t"
    tail -n 40 "$log"
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  before=$(ls "corpus/$t" | wc -l)
  "$CARGO_TARGET_DIR/$host/release/$t" -merge=1 "corpus/$t" "$scratch" >>"$log" 2>&1 || true
  added=$(($(ls "corpus/$t" | wc -l) - before))
  summary+=("$t: ${execs:-?} executions in ${secs}s, coverage ${cov:-?}, $added inputs added to fuzz/corpus/$t")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
