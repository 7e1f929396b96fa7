//! Streaming: an incremental SSE parser and the translators that turn a provider's stream into
//! the OpenAI chunks clients expect. Translators are synchronous state machines fed arbitrary
//! byte splits, so they are tested by feeding recorded streams split at every offset.

pub mod sse;

use crate::llm::Usage;

/// Why an upstream stream cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFault {
    /// The provider sent an error inside the stream (e.g. `data: {"error":..}`). Before any
    /// content this falls over to the next endpoint.
    InBand(String),
    /// The bytes are not the protocol they should be.
    Malformed(String),
    /// The stream ended before its terminator.
    Truncated,
}

impl std::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFault::InBand(m) => write!(f, "in-band error event: {m}"),
            StreamFault::Malformed(m) => write!(f, "malformed stream: {m}"),
            StreamFault::Truncated => write!(f, "stream ended before its terminator"),
        }
    }
}

/// Provider stream bytes in, OpenAI `chat.completion.chunk` SSE bytes out.
pub trait StreamTranslator: Send {
    /// Consumes upstream bytes, appending client-ready SSE to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), StreamFault>;
    /// The upstream body ended; flushes what is left.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault>;
    /// True once a chunk with content, a tool call or a finish reason went to `out`: from then on
    /// the response is committed to this endpoint.
    fn content_started(&self) -> bool;
    /// True once the stream's terminator was seen.
    fn done(&self) -> bool;
    fn usage(&self) -> Option<Usage>;
}
