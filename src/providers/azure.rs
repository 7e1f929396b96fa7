//! Azure OpenAI: OpenAI's body on Azure's deployment URL shape, with `api-version` and the
//! `api-key` header. (Being written: not yet selectable as a provider `kind`.)

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::config::runtime::Endpoint;
use crate::error::{ErrorKind, GatewayError};
use crate::llm::ChatRequest;

pub fn encode(
    _req: &ChatRequest,
    _ep: &Endpoint,
) -> Result<(Box<RequestHeader>, Bytes), GatewayError> {
    Err(GatewayError::new(
        ErrorKind::Internal,
        "the azure codec is not available yet",
    ))
}
