//! Config reload and binary upgrade while traffic runs: no request may fail, and a stream that
//! is in flight when the config changes (or the process is replaced) finishes intact.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Clients sending non-streaming calls in a loop until stopped; counts successes and failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Traffic {
    fn start(port: u16, model: &'static str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                thread::spawn(move || {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match Req::post(port, "/v1/chat/completions", chat(model, false)).try_send()
                        {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("{}: {}", r.status, r.text()));
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(e.to_string());
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        Traffic {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.threads {
            errors.extend(t.join().unwrap_or_default());
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// A long stream in a thread: returns (status, whether it ended with [DONE], chunk count).
fn long_stream(port: u16, model: &'static str) -> thread::JoinHandle<(u16, bool, usize)> {
    thread::spawn(move || {
        let r = Req::post(port, "/v1/chat/completions", chat(model, true)).send();
        let data = r.sse_data();
        (
            r.status,
            data.last().is_some_and(|d| d == "[DONE]"),
            data.len(),
        )
    })
}

fn admin_json(port: u16, method: &str, path: &str) -> serde_json::Value {
    let r = if method == "GET" {
        Req::get(port, path).send()
    } else {
        Req::post(port, path, "").send()
    };
    r.json()
}

#[test]
fn reload_under_traffic_loses_nothing() {
    let a = emulator(&[]);
    let providers = provider(
        "emu-a",
        &format!("http://127.0.0.1:{}/v1", a.port),
        &[
            ("m", "gpt-4o-mini"),
            ("slow", "gpt-4o-mini?tps=25&tokens=50"),
        ],
        "",
    );
    let gw = start_gateway(&providers, "  small:\n    deployments: [emu-a/m]");
    let good = std::fs::read_to_string(&gw.config_path).unwrap();
    let stream = long_stream(gw.proc.port, "emu-a/slow");
    let traffic = Traffic::start(gw.proc.port, "small", 4);
    thread::sleep(Duration::from_millis(200));

    let mut expected_version = 1;
    for i in 0..20 {
        if i % 2 == 0 {
            // A valid change: a new price, so the file hash differs.
            let changed = good.replace("input: 1.0", &format!("input: 1.{}", i + 1));
            std::fs::write(&gw.config_path, changed).unwrap();
            expected_version += 1;
        } else {
            std::fs::write(&gw.config_path, "gateway:\n  listen: 12\nnonsense: [").unwrap();
        }
        // Alternate the triggers: SIGHUP and the admin API (the file watcher may also fire).
        if i % 4 < 2 {
            gw.proc.signal("HUP");
        } else {
            admin_json(gw.admin_port, "POST", "/admin/reload");
        }
        thread::sleep(Duration::from_millis(150));
        let cfg = admin_json(gw.admin_port, "GET", "/admin/config");
        if i % 2 == 0 {
            assert!(cfg["last_reload_error"].is_null(), "{cfg}");
            assert_eq!(cfg["version"], expected_version, "{cfg}");
        } else {
            assert!(!cfg["last_reload_error"].is_null(), "{cfg}");
            assert_eq!(
                cfg["version"], expected_version,
                "the bad file must not replace the config"
            );
        }
    }
    let (ok, failed, errors) = traffic.finish();
    assert_eq!(failed, 0, "failed requests during reloads: {errors:?}");
    assert!(ok > 20, "traffic ran ({ok} requests)");
    let (status, done, chunks) = stream.join().unwrap();
    assert_eq!(
        (status, done),
        (200, true),
        "the in-flight stream survived ({chunks} chunks)"
    );

    // An invalid reload is visible in metrics too.
    let metrics = Req::get(gw.admin_port, "/metrics").send().text();
    assert!(metrics.contains("signalbox_config_reloads_total{result=\"error\"}"));
}

#[test]
fn graceful_upgrade_under_traffic_loses_nothing() {
    let a = emulator(&[]);
    let providers = provider(
        "emu-a",
        &format!("http://127.0.0.1:{}/v1", a.port),
        &[
            ("m", "gpt-4o-mini"),
            ("slow", "gpt-4o-mini?tps=20&tokens=30"),
        ],
        "",
    );
    let old = start_gateway(&providers, "  small:\n    deployments: [emu-a/m]");
    let port = old.proc.port;
    let stream = long_stream(port, "emu-a/slow");
    let traffic = Traffic::start(port, "small", 3);
    thread::sleep(Duration::from_millis(300));

    // The new binary starts with --upgrade and waits for the listening sockets; SIGQUIT makes
    // the old one hand them over and drain.
    let new = Command::new(BIN)
        .args(["run", "-u", "-c", old.config_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let new = Proc {
        child: new,
        port,
        name: "upgraded gateway",
    };
    thread::sleep(Duration::from_millis(500));
    old.proc.signal("QUIT");

    // The old process exits on its own once drained (grace 1 s + shutdown timeout 3 s).
    let mut old_proc = old;
    let until = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < until {
        if let Ok(Some(_)) = old_proc.proc.child.try_wait() {
            exited = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(exited, "the old gateway did not exit after SIGQUIT");
    thread::sleep(Duration::from_millis(300));
    let (ok, failed, errors) = traffic.finish();
    assert_eq!(failed, 0, "failed requests during the upgrade: {errors:?}");
    assert!(ok > 10, "traffic ran ({ok} requests)");
    let (status, done, chunks) = stream.join().unwrap();
    assert_eq!(
        (status, done),
        (200, true),
        "the in-flight stream finished on the old process ({chunks})"
    );
    // The new process serves.
    let r = Req::post(port, "/v1/chat/completions", chat("small", false)).send();
    assert_eq!(r.status, 200);
    drop(new);
    drop(old_proc);
}
