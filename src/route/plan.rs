//! The plan: the ordered chain of endpoints for one request, from the `model` field (a pinned
//! `provider/model`, or a logical model and its deployments) and the client's explicit fallback
//! list (`models` / `fallback`). The key's model allow-list is enforced on every name.

use std::sync::Arc;

use crate::config::Config;
use crate::config::runtime::{ApiKey, Endpoint};
use crate::error::{ErrorKind, GatewayError};
use crate::llm::ChatRequest;

pub struct Plan {
    pub chain: Vec<Arc<Endpoint>>,
    pub router_version: &'static str,
}

/// The endpoints a model name stands for.
fn resolve<'a>(cfg: &'a Config, name: &str) -> Option<Vec<&'a Arc<Endpoint>>> {
    if let Some(ep) = cfg.endpoints.get(name) {
        return Some(vec![ep]);
    }
    cfg.models.get(name).map(|m| m.deployments.iter().collect())
}

pub fn plan(cfg: &Config, key: &ApiKey, req: &ChatRequest) -> Result<Plan, GatewayError> {
    let mut chain: Vec<Arc<Endpoint>> = Vec::new();
    let names = std::iter::once(("model".to_string(), req.model.as_str())).chain(
        req.fallback_models
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("models[{i}]"), m.as_str())),
    );
    for (param, name) in names {
        let Some(eps) = resolve(cfg, name) else {
            return Err(GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("model `{name}` does not exist; GET /v1/models lists the models this key may use"),
            )
            .with_param(param));
        };
        if !key.may_use(name) {
            return Err(GatewayError::new(
                ErrorKind::ModelNotAllowed,
                format!("this key may not use model `{name}`"),
            )
            .with_param(param));
        }
        for ep in eps {
            if !chain.iter().any(|c| Arc::ptr_eq(c, ep)) {
                chain.push(ep.clone());
            }
        }
    }
    Ok(Plan {
        chain,
        router_version: "v1",
    })
}

/// Model ids the key may use, for `GET /v1/models`: logical models first, then pinned endpoints.
pub fn visible_models<'a>(
    cfg: &'a Config,
    key: &'a ApiKey,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let logical = cfg.model_order.iter().map(|m| (m.as_str(), "signalbox"));
    let pinned = cfg.endpoint_order.iter().filter_map(|id| {
        cfg.endpoints
            .get(id)
            .map(|e| (id.as_str(), e.provider.name.as_str()))
    });
    logical.chain(pinned).filter(|(id, _)| key.may_use(id))
}
