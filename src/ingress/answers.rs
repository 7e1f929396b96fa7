//! Answers the gateway gives without calling a provider: `/v1/models`, `/healthz`, `/readyz`,
//! and every error, written in the OpenAI envelope with the Signalbox headers.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde::Serialize;

use crate::config::Config;
use crate::config::runtime::ApiKey;
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::route::plan::visible_models;

pub async fn json(session: &mut Session, ctx: &mut RequestCtx, status: u16, body: Vec<u8>) {
    ctx.status = status;
    let Ok(mut h) = ResponseHeader::build_no_case(status, Some(16)) else {
        return;
    };
    let _ = h.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
    ctx.apply_headers(&mut h);
    if session
        .write_response_header(Box::new(h), false)
        .await
        .is_ok()
    {
        let _ = session
            .write_response_body(Some(Bytes::from(body)), true)
            .await;
    }
}

pub async fn error(session: &mut Session, ctx: &mut RequestCtx, e: GatewayError) {
    let status = e.status();
    ctx.status = status;
    let body = e.to_body();
    let Ok(mut h) = ResponseHeader::build_no_case(status, Some(16)) else {
        return;
    };
    let _ = h.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
    if let Some(s) = e.retry_after {
        let _ = h.insert_header(http::header::RETRY_AFTER, s);
    }
    if e.kind == crate::error::ErrorKind::RequestTooLarge || e.close {
        // The rest of the body was never read: the connection cannot be reused.
        let _ = h.insert_header(http::header::CONNECTION, "close");
        session.set_keepalive(None);
    }
    ctx.error = Some(e);
    ctx.apply_headers(&mut h);
    if session
        .write_response_header(Box::new(h), false)
        .await
        .is_ok()
    {
        let _ = session
            .write_response_body(Some(Bytes::from(body)), true)
            .await;
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

pub fn models(cfg: &Config, key: &ApiKey) -> Vec<u8> {
    let data = visible_models(cfg, key)
        .map(|(id, owner)| ModelEntry {
            id,
            object: "model",
            created: cfg.loaded_at_unix,
            owned_by: owner,
        })
        .collect();
    serde_json::to_vec(&ModelList {
        object: "list",
        data,
    })
    .unwrap_or_default()
}

/// `classifier`: `onnx`, or `keyword (why)` when auto-routing runs on the keyword rules.
pub fn ready(cfg: &Config, classifier: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "status": "ready",
        "config_version": cfg.version,
        "config_hash": cfg.hash,
        "endpoints": cfg.endpoints.len(),
        "classifier": classifier,
    }))
    .unwrap_or_default()
}
