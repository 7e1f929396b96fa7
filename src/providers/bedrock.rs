//! bedrock codec. (Being written: not yet selectable as a provider `kind`.)

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::config::runtime::Endpoint;
use crate::error::{ErrorKind, GatewayError};
use crate::llm::{ChatRequest, ChatResponse, StreamEvent};
use crate::stream::StreamFault;

pub fn encode(
    _req: &ChatRequest,
    _ep: &Endpoint,
) -> Result<(Box<RequestHeader>, Bytes), GatewayError> {
    Err(GatewayError::new(
        ErrorKind::Internal,
        "the bedrock codec is not available yet",
    ))
}

pub fn decode(_body: &[u8], _ep: &Endpoint) -> Result<ChatResponse, String> {
    Err("the bedrock codec is not available yet".into())
}

pub struct StreamDecoder;

impl StreamDecoder {
    pub fn new(_ep: &Endpoint) -> Self {
        StreamDecoder
    }
}

impl crate::stream::StreamDecoder for StreamDecoder {
    fn feed(&mut self, _input: &[u8], _events: &mut Vec<StreamEvent>) -> Result<(), StreamFault> {
        Err(StreamFault::Malformed(
            "the bedrock codec is not available yet".into(),
        ))
    }
    fn finish(&mut self, _events: &mut Vec<StreamEvent>) -> Result<(), StreamFault> {
        Err(StreamFault::Truncated)
    }
}
