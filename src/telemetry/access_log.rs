//! One JSON line per request, written by a dedicated thread so a slow disk or a full pipe never
//! blocks a request. The record type has no field that could hold prompt or completion text.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde::Serialize;

#[derive(Serialize, Default)]
pub struct AccessRecord<'a> {
    pub ts: f64,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub key_id: Option<&'a str>,
    pub logical_model: Option<&'a str>,
    pub task: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub router_version: Option<&'a str>,
    pub attempts: Option<&'a str>,
    pub fallback_reason: Option<&'a str>,
    pub stream: bool,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: f64,
    pub error: Option<&'a str>,
}

static SINK: OnceLock<Option<SyncSender<Vec<u8>>>> = OnceLock::new();

/// Starts the writer. `target`: `stdout`, `off`, or a file path (appended). Call once at start.
pub fn init(target: &str) -> std::io::Result<()> {
    let out: Option<Box<dyn Write + Send>> = match target {
        "off" => None,
        "stdout" => Some(Box::new(std::io::stdout())),
        path => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
    };
    let sender = out.map(|mut w| {
        let (tx, rx) = sync_channel::<Vec<u8>>(16 * 1024);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let _ = w.write_all(&line);
                    // Drain what is queued before flushing: one syscall for a burst.
                    while let Ok(more) = rx.try_recv() {
                        let _ = w.write_all(&more);
                    }
                    let _ = w.flush();
                }
            })
            .map(|_| tx)
    });
    let sender = match sender {
        Some(Ok(tx)) => Some(tx),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let _ = SINK.set(sender);
    Ok(())
}

pub fn write(rec: &AccessRecord<'_>) {
    let Some(Some(tx)) = SINK.get() else {
        return;
    };
    let mut line = Vec::with_capacity(512);
    if serde_json::to_writer(&mut line, rec).is_err() {
        return;
    }
    line.push(b'\n');
    if let Err(TrySendError::Full(_)) = tx.try_send(line) {
        super::metrics::get().access_log_dropped.inc();
    }
}
