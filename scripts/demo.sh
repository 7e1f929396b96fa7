#!/usr/bin/env bash
# The offline demo: builds Signalbox (release), starts two emulated OpenAI-compatible providers
# on loopback and the gateway in front of them (conf/demo.yaml). Ctrl-C stops everything.
#   gateway  http://127.0.0.1:8080  (key: sk-signalbox-demo)
#   admin    http://127.0.0.1:9090  (/metrics, /admin/config, /admin/endpoints)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/signalbox-target}"
scripts/setup.sh
scripts/models.sh || echo "demo: classifier assets unavailable; signalbox/auto uses the keyword rules"
cargo build --release --locked
BIN="$CARGO_TARGET_DIR/release/signalbox"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN" emulate --listen 127.0.0.1:9101 --api-key sk-emu-a --name provider-a --tokens 24 & pids+=($!)
"$BIN" emulate --listen 127.0.0.1:9102 --api-key sk-emu-b --name provider-b --tokens 24 & pids+=($!)
"$BIN" run -c conf/demo.yaml & pids+=($!)
sleep 1
cat <<'MSG'

Signalbox demo is up. Try:
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer sk-signalbox-demo' \
       -H 'Content-Type: application/json' \
       -d '{"model":"demo-fallback","messages":[{"role":"user","content":"hi"}]}' -D - 
  (the first deployment answers 429; see X-Signalbox-Attempts)
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer sk-signalbox-demo' \
       -H 'Content-Type: application/json' -H 'X-Signalbox-Task: code' \
       -d '{"model":"signalbox/auto","messages":[{"role":"user","content":"fix my bug"}]}' -D -
  (routed to the emulated Anthropic endpoint, translated back to OpenAI's format)
  curl -s http://127.0.0.1:9090/metrics | grep ^llm_
Ctrl-C to stop.
MSG
wait
