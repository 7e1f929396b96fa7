#!/usr/bin/env python3
"""A 20-step sequential agent loop against an emulated provider mix where one provider has a heavy
tail: loop latency p50/p99 for (1) a pinned endpoint, (2) signalbox/auto with latency-aware
selection, (3) signalbox/fast with latency-aware selection and hedging.

  python3 load-tests/agent_loop.py [--loops 20] [--steps 20]

Starts its own emulator and gateway (release build at $CARGO_TARGET_DIR/release/signalbox) on free
loopback ports and stops them with SIGINT. Provider A answers in 50 ms, but 5 % of its calls take
1 s more; provider B always answers in 100 ms. The two are equal in quality and price. The
scenarios run in order on one gateway, so the live stats carry over from one to the next.
"""
import argparse
import hashlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time

KEY = "sk-agent-loop"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/signalbox-target"))
    binary = os.path.join(target, "release", "signalbox")
    emu_port, gw_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="signalbox-agent-loop-")
    q = {"reasoning": 0.9, "code": 0.9, "creative": 0.9, "rewrite": 0.9, "chat": 0.9, "extraction": 0.9,
         "summarize": 0.9, "translation": 0.9}
    qs = json.dumps(q)
    chain = "[a/m, b/m]"
    cfg = f"""
server: {{threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, pid_file: {tmp}/pid, upgrade_sock: {tmp}/sock}}
gateway: {{listen: ["127.0.0.1:{gw_port}"]}}
logging: {{access_log: off, level: warn}}
providers:
  a: {{kind: openai, base_url: "http://127.0.0.1:{emu_port}/v1", api_key: sk-up,
      models: {{m: {{upstream_model: "gpt-4o-mini?latency_ms=50&tail_pct=5&tail_ms=1000", price: {{input: 1, output: 2}}, quality: {qs}}}}}}}
  b: {{kind: openai, base_url: "http://127.0.0.1:{emu_port}/v1", api_key: sk-up,
      models: {{m: {{upstream_model: "gpt-4o-mini?latency_ms=100", price: {{input: 1, output: 2}}, quality: {qs}}}}}}}
routing:
  default_task: chat
  hedge_min_delay_ms: 50
  chains: {{reasoning: {chain}, code: {chain}, creative: {chain}, rewrite: {chain}, chat: {chain},
           extraction: {chain}, summarize: {chain}, translation: {chain}, tool_use: {chain}, multimodal: {chain}}}
keys:
  loop: {{sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", hedge: true, rpm: 1000000}}
"""
    path = os.path.join(tmp, "gw.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    procs = [
        subprocess.Popen([binary, "emulate", "--listen", f"127.0.0.1:{emu_port}", "--api-key", "sk-up"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([binary, "run", "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_port(emu_port)
        wait_port(gw_port)
        conn = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
        conn.connect()
        # http.client writes headers and body in two sends: without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every call.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def call(model, step):
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": f"step {step}: plan the next tool call"}]})
            conn.request("POST", "/v1/chat/completions", body,
                         {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
            return r.getheader("x-signalbox-endpoint"), r.getheader("x-signalbox-router-version")

        rows = []
        for label, model in [("pinned a/m (no selection, no hedge)", "a/m"),
                             ("signalbox/auto (live-latency selection)", "signalbox/auto"),
                             ("signalbox/fast (selection + hedging)", "signalbox/fast")]:
            loops, served, hedged = [], {}, 0
            for _ in range(args.loops):
                t0 = time.perf_counter()
                for s in range(args.steps):
                    ep, rv = call(model, s)
                    served[ep] = served.get(ep, 0) + 1
                    hedged += rv == "v2_hedged"
                loops.append(time.perf_counter() - t0)
            rows.append((label, statistics.median(loops), pct(loops, 0.99), served, hedged))
        print(f"| scenario ({args.loops} loops x {args.steps} steps) | loop p50 (s) | loop p99 (s) | served by | hedged calls |")
        print("|---|---|---|---|---|")
        for label, p50, p99, served, hedged in rows:
            print(f"| {label} | {p50:.3f} | {p99:.3f} | {json.dumps(served)} | {hedged} |")
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
