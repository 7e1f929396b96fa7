#!/usr/bin/env python3
"""Soak: mixed traffic through the real gateway for a long time, sampling the gateway's memory,
file descriptors and pooled upstream connections, to catch leaks.

  python3 load-tests/soak.py [--minutes 30] [--sample 10] [--clients 16] [--rps 60]
                             [--bin PATH] [--csv FILE]

Starts two emulators and the gateway (release build at $CARGO_TARGET_DIR/release/signalbox, copied
aside so a rebuild cannot swap it mid-run) on free loopback ports, and stops them with SIGINT. The
traffic is closed-loop from --clients threads on keep-alive connections, paced to about --rps in
total, and mixed: plain calls, streams (some with usage), a chain whose first member answers 429
half the time, a chain whose first member is refused, streams that break mid-way (error event),
and clients that hang up in the middle of a stream.

Every --sample seconds it records the gateway's RSS (VmRSS), open fds, and established
connections from the gateway to the emulators (the upstream pool plus calls in flight); fds and
connections are the median of 5 reads over half a second. The checks, over the samples after
the warm-up (5 minutes, or a sixth of a shorter run):
  - RSS grows less than 5 % from the end of the warm-up to the end;
  - open fds and upstream connections stay within +-5 of their median after the warm-up, and
    their median over the last fifth of the run is within +-5 of that over the first fifth (a
    trend, not noise).
Exits 1 when a check fails or a request fails unexpectedly. `--analyze CSV` re-runs the checks
on the samples of an earlier run (`--csv`).
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

KEY = "sk-soak"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(1500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def upstream_conns(pid, ports):
    """Established TCP connections of `pid` whose remote port is one of `ports`."""
    inodes = socket_inodes(pid)
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    rem_port = int(parts[2].rsplit(":", 1)[1], 16)
                    if parts[3] == "01" and rem_port in ports and parts[9] in inodes:
                        n += 1
        except FileNotFoundError:
            pass
    return n


# (weight, model, stream, kind): kind says what counts as the expected outcome.
MIX = [
    (35, "small", False, "ok"),
    (20, "small", True, "ok"),
    (10, "fallover", False, "ok"),
    (10, "fallover", True, "ok"),
    (5, "refused", False, "ok"),
    (8, "a/slowstream", True, "ok"),
    (6, "a/breaks", True, "error_event"),
    (6, "a/slowstream", True, "hangup"),
]


class Client(threading.Thread):
    def __init__(self, port, stop, pace, stats, lock, seed):
        super().__init__(daemon=True)
        self.port, self.stop, self.pace, self.stats, self.lock = port, stop, pace, stats, lock
        self.rng = random.Random(seed)
        self.conn = None

    def connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def count(self, k):
        with self.lock:
            self.stats[k] = self.stats.get(k, 0) + 1

    def one(self):
        weights = [w for w, *_ in MIX]
        _, model, stream, kind = self.rng.choices(MIX, weights)[0]
        body = {"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "soak " + "x" * self.rng.randint(0, 2000)}]}
        if stream and self.rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
        if self.conn is None:
            self.connect()
        self.conn.request("POST", "/v1/chat/completions", json.dumps(body),
                          {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r = self.conn.getresponse()
        if kind == "hangup":
            r.read(200)  # a little of the stream, then the client goes away
            self.conn.close()
            self.conn = None
            self.count("hangup")
            return
        data = r.read()
        if r.status != 200:
            self.count(f"failed_{r.status}")
            return
        if not stream:
            self.count("ok")
            return
        events = [e[6:] for e in data.decode("utf-8", "replace").split("\n\n") if e.startswith("data: ")]
        last = events[-1] if events else ""
        if last == "[DONE]":
            self.count("ok" if kind == "ok" else "unexpected_done")
        elif last.startswith("{") and "error" in json.loads(last):
            self.count("error_event" if kind == "error_event" else "unexpected_error_event")
        else:
            self.count("broken_stream")

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.one()
            except (OSError, http.client.HTTPException) as e:
                self.count("client_error:" + type(e).__name__)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            spent = time.monotonic() - t0
            if spent < self.pace:
                self.stop.wait(self.pace - spent)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def analyze(samples, warmup):
    """Prints the figures and returns the leak checks as (name, passed) pairs."""
    after = [s for s in samples if s[0] >= warmup]
    base, end = after[0], after[-1]
    rss_growth = (end[1] - base[1]) / base[1] * 100
    fifth = max(1, len(after) // 5)
    print(f"RSS: {samples[0][1]} kB at start, {base[1]} kB after warm-up ({base[0]} s), {end[1]} kB at the end "
          f"({end[0]} s): {rss_growth:+.2f} %  (max {max(s[1] for s in samples)} kB)")
    checks = [("RSS growth < 5 % after warm-up", rss_growth < 5)]
    for col, name in ((2, "open fds"), (3, "upstream connections")):
        vals = [s[col] for s in after]
        mid = median(vals)
        dev = max(abs(v - mid) for v in vals)
        trend = median(vals[-fifth:]) - median(vals[:fifth])
        print(f"{name}: median {mid} after warm-up, range {min(vals)}..{max(vals)} (max deviation {dev}), "
              f"first-fifth -> last-fifth median {trend:+d}")
        checks.append((f"{name} within +-5", dev <= 5))
        checks.append((f"{name}: no trend beyond +-5", abs(trend) <= 5))
    return checks


def report(checks):
    ok = True
    for name, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")
        ok &= passed
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rps", type=float, default=60, help="total request rate (approximate)")
    ap.add_argument("--bin", default=None)
    ap.add_argument("--csv", default=None, help="write the samples here")
    ap.add_argument("--analyze", default=None, help="check the samples of an earlier run's CSV and exit")
    args = ap.parse_args()
    if args.analyze:
        with open(args.analyze) as f:
            next(f)
            samples = [tuple(int(x) for x in line.split(",")) for line in f if line.strip()]
        duration = samples[-1][0]
        raise SystemExit(0 if report(analyze(samples, min(300.0, duration / 6))) else 1)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/signalbox-target"))
    tmp = tempfile.mkdtemp(prefix="signalbox-soak-")
    binary = os.path.join(tmp, "signalbox")
    shutil.copy2(args.bin or os.path.join(target, "release", "signalbox"), binary)
    emu_a, emu_b, gw_port, admin_port, dead = (free_port() for _ in range(5))
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    cfg = f"""
server: {{threads: 2, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, pid_file: {tmp}/pid, upgrade_sock: {tmp}/sock}}
gateway: {{listen: ["127.0.0.1:{gw_port}"]}}
admin: {{listen: "127.0.0.1:{admin_port}"}}
logging: {{access_log: {tmp}/access.log, level: warn}}
providers:
  a:
    kind: openai
    base_url: "http://127.0.0.1:{emu_a}/v1"
    api_key: sk-up
    read_timeout_ms: 5000
    models:
      m: {{upstream_model: "gpt-4o-mini?latency_ms=5", price: {{input: 1, output: 2}}}}
      r429: {{upstream_model: "gpt-4o-mini?status=429&fault_pct=50", price: {{input: 1, output: 2}}}}
      slowstream: {{upstream_model: "gpt-4o-mini?tps=100&tokens=60", price: {{input: 1, output: 2}}}}
      breaks: {{upstream_model: "gpt-4o-mini?drop_after=4&tokens=30", price: {{input: 1, output: 2}}}}
  b:
    kind: openai
    base_url: "http://127.0.0.1:{emu_b}/v1"
    api_key: sk-up
    models:
      m: {{upstream_model: "gpt-4o-mini?latency_ms=10", price: {{input: 1, output: 2}}}}
  dead:
    kind: openai
    base_url: "http://127.0.0.1:{dead}/v1"
    api_key: sk-up
    connect_timeout_ms: 500
    models:
      m: {{upstream_model: gpt-4o-mini, price: {{input: 1, output: 2}}}}
models:
  small: {{deployments: [a/m, b/m]}}
  fallover: {{deployments: [a/r429, b/m]}}
  refused: {{deployments: [dead/m, b/m]}}
keys:
  soak: {{sha256: "{key_hash}", rpm: 0}}
"""
    path = os.path.join(tmp, "gw.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    procs = [
        subprocess.Popen([binary, "emulate", "--listen", f"127.0.0.1:{p}", "--api-key", "sk-up",
                          "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in (emu_a, emu_b)
    ]
    gw_err = open(os.path.join(tmp, "gateway.stderr"), "w+")
    gw = subprocess.Popen([binary, "run", "-c", path], stdout=subprocess.DEVNULL, stderr=gw_err)
    procs.append(gw)
    stop = threading.Event()
    ok = True
    try:
        for p in (emu_a, emu_b, gw_port):
            wait_port(p)
        stats, lock = {}, threading.Lock()
        pace = args.clients / args.rps
        clients = [Client(gw_port, stop, pace, stats, lock, i) for i in range(args.clients)]
        for c in clients:
            c.start()
        duration = args.minutes * 60
        warmup = min(300.0, duration / 6)
        start = time.monotonic()
        samples = []
        print(f"soak: {args.minutes} min, {args.clients} clients, ~{args.rps} rps, warm-up {warmup:.0f} s, "
              f"sample every {args.sample} s; gateway pid {gw.pid}")
        print("t_s,rss_kb,fds,upstream_conns,requests")
        while True:
            t = time.monotonic() - start
            with lock:
                n = sum(stats.values())
            # fds and connections: the median of 5 reads over half a second, so one burst of
            # calls in flight at the instant of a read does not count as a leak.
            reads = []
            for _ in range(5):
                reads.append((fd_count(gw.pid), upstream_conns(gw.pid, {emu_a, emu_b})))
                time.sleep(0.1)
            fds = sorted(r[0] for r in reads)[2]
            conns = sorted(r[1] for r in reads)[2]
            row = (round(t), rss_kb(gw.pid), fds, conns, n)
            samples.append(row)
            print(",".join(map(str, row)), flush=True)
            if t >= duration or gw.poll() is not None:
                break
            time.sleep(min(args.sample, max(0.0, duration - t)) or args.sample)
        stop.set()
        for c in clients:
            c.join(timeout=70)
        if args.csv:
            with open(args.csv, "w") as f:
                f.write("t_s,rss_kb,fds,upstream_conns,requests\n")
                for row in samples:
                    f.write(",".join(map(str, row)) + "\n")
        res = analyze(samples, warmup)
        gw_err.seek(0)
        panics = [l for l in gw_err.read().splitlines() if "panicked" in l]
        unexpected = {k: v for k, v in stats.items() if k not in ("ok", "error_event", "hangup")}
        total = sum(stats.values())
        elapsed = samples[-1][0]
        print(f"requests: {total} in {elapsed} s ({total / max(elapsed, 1):.1f} rps): {json.dumps(stats, sort_keys=True)}")
        checks = [
            ("gateway alive", gw.poll() is None),
            ("no panic", not panics),
            ("no unexpected outcome", not unexpected),
        ] + res
        ok = report(checks)
        if panics:
            print("\n".join(panics[:10]))
        if unexpected:
            print(f"unexpected outcomes: {unexpected}")
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
