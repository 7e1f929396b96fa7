//! The admin listener (loopback by default): `/metrics`, `/admin/config`, `/admin/endpoints`,
//! `POST /admin/reload`. Kept off the gateway listener so it is never exposed with it.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConfigStore;
use crate::telemetry::metrics;

pub struct AdminApp {
    pub store: Arc<ConfigStore>,
    pub stats: Arc<crate::route::stats::StatsRegistry>,
}

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ctype)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn json(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec(&v).unwrap_or_default(),
    )
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, s: &mut ServerSession) -> Response<Vec<u8>> {
        let cfg = self.store.snapshot();
        if let Some(expected) = cfg.admin.token_sha256 {
            let presented = s
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .map(|k| -> [u8; 32] { Sha256::digest(k.trim_ascii()).into() });
            if !presented.is_some_and(|p| bool::from(p.ct_eq(&expected))) {
                return json(
                    401,
                    serde_json::json!({"error": {"message": "admin token required", "type": "authentication_error", "code": "invalid_api_key", "param": "Authorization"}}),
                );
            }
        }
        let method = s.req_header().method.as_str().to_string();
        let path = s.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => reply(200, "text/plain; version=0.0.4", metrics::get().render()),
            ("GET", "/admin/config") => {
                let err = self.store.last_error();
                json(
                    200,
                    serde_json::json!({
                        "version": cfg.version,
                        "hash": cfg.hash,
                        "loaded_at": cfg.loaded_at_unix,
                        "path": cfg.source_path,
                        "endpoints": cfg.endpoint_order,
                        "models": cfg.model_order,
                        "keys": cfg.keys.len(),
                        "last_reload_error": err.map(|e| serde_json::json!({
                            "at": e.at_unix, "trigger": e.trigger, "errors": e.errors,
                        })),
                    }),
                )
            }
            ("GET", "/admin/endpoints") => {
                let list: Vec<_> = cfg
                    .endpoint_order
                    .iter()
                    .filter_map(|id| cfg.endpoints.get(id))
                    .map(|e| {
                        let st = self.stats.get(&e.id);
                        let now = tokio::time::Instant::now();
                        serde_json::json!({
                            "id": e.id,
                            "provider": e.provider.name,
                            "upstream_model": e.upstream_model,
                            "host": e.provider.host,
                            "tls": e.provider.tls,
                            "in_flight": st.in_flight(),
                            "breaker": st.breaker.peek(now),
                            "fast_ttft_ms": st.fast_ms(now),
                            "window": st.view(),
                        })
                    })
                    .collect();
                json(200, serde_json::json!({ "endpoints": list }))
            }
            ("POST", "/admin/reload") => {
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.reload("admin")).await {
                    Ok(Ok(c)) => json(
                        200,
                        serde_json::json!({"status": "ok", "version": c.version, "hash": c.hash}),
                    ),
                    Ok(Err(errors)) => json(
                        400,
                        serde_json::json!({"status": "rejected", "errors": errors}),
                    ),
                    Err(_) => json(500, serde_json::json!({"status": "failed"})),
                }
            }
            _ => json(
                404,
                serde_json::json!({"error": {"message": format!("no admin route for {method} {path}"), "type": "invalid_request_error", "code": "not_found", "param": null}}),
            ),
        }
    }
}
