//! The reload triggers: SIGHUP and a change of the file on disk (the admin API calls
//! `ConfigStore::reload` directly). Runs as a Pingora background service, off the request path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::ConfigStore;

pub struct Reloader {
    pub store: Arc<ConfigStore>,
    /// How often the file's metadata is checked.
    pub poll: Duration,
}

/// What identifies a version of the file without reading it.
fn stamp(meta: &std::fs::Metadata) -> (Option<SystemTime>, u64) {
    (meta.modified().ok(), meta.len())
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by file change or admin API only");
                None
            }
        };
        let path = self.store.path().to_string();
        let mut last = tokio::fs::metadata(&path).await.ok().map(|m| stamp(&m));
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => {
                    // Give the access-log writer its last lines before the process exits.
                    let _ = tokio::task::spawn_blocking(crate::telemetry::access_log::flush).await;
                    return;
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "sighup",
                _ = tick.tick() => {
                    let now = tokio::fs::metadata(&path).await.ok().map(|m| stamp(&m));
                    if now.is_none() || now == last {
                        continue;
                    }
                    last = now;
                    "file_change"
                }
            };
            let store = self.store.clone();
            // File I/O and validation are blocking work: keep them off the async workers.
            let _ = tokio::task::spawn_blocking(move || store.reload(trigger)).await;
        }
    }
}
