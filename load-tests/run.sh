#!/usr/bin/env bash
# Added latency of the gateway: a pinned, non-streaming call through Signalbox vs the same call
# sent straight to the emulator, open-loop at fixed rates (oha -q RATE --latency-correction).
# The gateway gets CPU 0; the emulator and the load generator share CPU 1. Auth, the access log
# (to a file) and metrics are on, as in production.
#
#   load-tests/run.sh [DURATION_SECONDS=15] [RATES="500 1000 2000"] [REPS=2]
#
# Installs oha (cargo) when missing; builds the release binary. Prints a Markdown table and saves
# it under load-tests/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
RATES=${2:-"500 1000 2000"}
REPS=${3:-2}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/signalbox-target}"
scripts/setup.sh
command -v oha >/dev/null 2>&1 || cargo install oha --locked
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/signalbox"
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is required" >&2; exit 1; }

WORK=$(mktemp -d /tmp/signalbox-load.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EMU=$(port); GW=$(port); ADMIN=$(port)
KEY=sk-load-test
HASH=$("$BIN" hash-key "$KEY")
cat > "$WORK/gw.yaml" <<YAML
server:
  threads: 1
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
  pid_file: $WORK/pid
  upgrade_sock: $WORK/upgrade.sock
gateway:
  listen: ["127.0.0.1:$GW"]
admin:
  listen: "127.0.0.1:$ADMIN"
logging:
  access_log: $WORK/access.log
  level: warn
providers:
  emu:
    kind: openai
    base_url: http://127.0.0.1:$EMU/v1
    api_key: sk-up
    models:
      gpt-4o-mini: {price: {input: 0.15, output: 0.6}}
keys:
  load:
    sha256: "$HASH"
    rpm: 100000000   # a high limit, not switched off: the limiter runs on every request
YAML
taskset -c 1 "$BIN" emulate --listen "127.0.0.1:$EMU" --api-key sk-up --threads 1 >/dev/null 2>&1 & pids+=($!)
taskset -c 0 "$BIN" run -c "$WORK/gw.yaml" >/dev/null 2>"$WORK/gw.err" & GWPID=$!; pids+=($GWPID)
for p in $EMU $GW; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
done

BODY='{"model":"MODEL","messages":[{"role":"user","content":"Summarize the status of the build in one line."}]}'
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run_oha() { # url model rate -> json file
  local url=$1 model=$2 rate=$3 out=$4
  taskset -c 1 oha --no-tui -z "${DURATION}s" -q "$rate" --latency-correction -c 64 -m POST \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "${BODY/MODEL/$model}" --output-format json "$url" > "$out"
}
# Warm up both paths (connection pools, allocator).
run_oha "http://127.0.0.1:$EMU/v1/chat/completions" gpt-4o-mini 200 "$WORK/warm1.json" >/dev/null || true
run_oha "http://127.0.0.1:$GW/v1/chat/completions" emu/gpt-4o-mini 200 "$WORK/warm2.json" >/dev/null || true

HZ=$(getconf CLK_TCK)
echo "| rate (rps) | rep | direct p50 / p99 (ms) | via gateway p50 / p99 (ms) | added p50 / p99 (ms) | gateway CPU s per 1k req | success |"
echo "|---|---|---|---|---|---|---|"
for rate in $RATES; do
  for rep in $(seq "$REPS"); do
    run_oha "http://127.0.0.1:$EMU/v1/chat/completions" gpt-4o-mini "$rate" "$WORK/direct.json"
    t0=$(cpu_ticks $GWPID)
    run_oha "http://127.0.0.1:$GW/v1/chat/completions" emu/gpt-4o-mini "$rate" "$WORK/gw.json"
    t1=$(cpu_ticks $GWPID)
    python3 - "$WORK/direct.json" "$WORK/gw.json" "$rate" "$rep" "$((t1 - t0))" "$HZ" <<'PY'
import json, sys
d, g = (json.load(open(p)) for p in sys.argv[1:3])
rate, rep, ticks, hz = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
ms = lambda x: x * 1000
dp, gp = d["latencyPercentiles"], g["latencyPercentiles"]
n = sum(g["statusCodeDistribution"].values())
ok = g["statusCodeDistribution"].get("200", 0)
cpu = (ticks / hz) / max(n, 1) * 1000
print(f"| {rate} | {rep} | {ms(dp['p50']):.3f} / {ms(dp['p99']):.3f} | {ms(gp['p50']):.3f} / {ms(gp['p99']):.3f} | "
      f"{ms(gp['p50'] - dp['p50']):.3f} / {ms(gp['p99'] - dp['p99']):.3f} | {cpu:.3f} | {ok}/{n} |")
PY
  done
done
echo
echo "gateway RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$GWPID/status)"
