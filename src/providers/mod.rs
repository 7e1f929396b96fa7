//! Provider codecs: pure functions between the canonical model (`llm.rs`) and each provider's
//! wire format. No I/O here; the engine does the calling. This module holds the only `match` on
//! the provider kind, so adding a provider means one new file and one new arm.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod openai;
pub mod tool_ids;

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::config::runtime::Endpoint;
use crate::engine::FallbackReason;
use crate::error::GatewayError;
use crate::llm::{ChatRequest, Usage};
use crate::stream::{StreamTranslator, Translated};

/// A provider's wire format. The OpenAI-compatible flavours share one codec; they are named so
/// that flavour-specific rules (ID formats, unsupported fields) have a place to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Groq,
    Mistral,
    DeepSeek,
    Xai,
    Together,
    Fireworks,
    Vllm,
    Ollama,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

/// The codec a provider kind speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

impl ProviderKind {
    pub fn codec(self) -> Codec {
        match self {
            ProviderKind::OpenAi
            | ProviderKind::Groq
            | ProviderKind::Mistral
            | ProviderKind::DeepSeek
            | ProviderKind::Xai
            | ProviderKind::Together
            | ProviderKind::Fireworks
            | ProviderKind::Vllm
            | ProviderKind::Ollama => Codec::OpenAi,
            ProviderKind::Azure => Codec::Azure,
            ProviderKind::Anthropic => Codec::Anthropic,
            ProviderKind::Gemini => Codec::Gemini,
            ProviderKind::Bedrock => Codec::Bedrock,
        }
    }

    pub const NAMES: &'static str = "openai, groq, mistral, deepseek, xai, together, fireworks, vllm, ollama, anthropic, bedrock, azure, gemini";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "openai" => ProviderKind::OpenAi,
            "groq" => ProviderKind::Groq,
            "mistral" => ProviderKind::Mistral,
            "deepseek" => ProviderKind::DeepSeek,
            "xai" => ProviderKind::Xai,
            "together" => ProviderKind::Together,
            "fireworks" => ProviderKind::Fireworks,
            "vllm" => ProviderKind::Vllm,
            "ollama" => ProviderKind::Ollama,
            "anthropic" => ProviderKind::Anthropic,
            "bedrock" => ProviderKind::Bedrock,
            "azure" => ProviderKind::Azure,
            "gemini" => ProviderKind::Gemini,
            _ => return None,
        })
    }
}

/// Every codec's `User-Agent`.
pub const USER_AGENT: &str = concat!("signalbox/", env!("CARGO_PKG_VERSION"));

/// The JSON POST header every HTTP codec sends: Host, exact Content-Length, Accept by streaming,
/// our User-Agent, the provider's extra headers, and the credential under `auth` (marked
/// sensitive, so it never reaches a log through the header's `Debug`).
pub(crate) fn json_post_header(
    p: &crate::config::runtime::Provider,
    path: &str,
    body_len: usize,
    stream: bool,
    auth: Option<(&'static str, String)>,
) -> Result<Box<RequestHeader>, GatewayError> {
    use crate::error::ErrorKind;
    let internal = |e: pingora::BError| GatewayError::new(ErrorKind::Internal, e.to_string());
    let mut h = RequestHeader::build("POST", path.as_bytes(), Some(8)).map_err(internal)?;
    h.insert_header(http::header::HOST, p.authority.as_str())
        .map_err(internal)?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")
        .map_err(internal)?;
    h.insert_header(http::header::CONTENT_LENGTH, body_len)
        .map_err(internal)?;
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    h.insert_header(http::header::ACCEPT, accept)
        .map_err(internal)?;
    h.insert_header(http::header::USER_AGENT, USER_AGENT)
        .map_err(internal)?;
    if let Some((name, value)) = auth {
        let mut v = http::HeaderValue::from_str(&value).map_err(|_| {
            GatewayError::new(
                ErrorKind::Internal,
                "provider key is not a valid header value",
            )
        })?;
        v.set_sensitive(true);
        h.insert_header(name, v).map_err(internal)?;
    }
    for (n, v) in &p.extra_headers {
        h.insert_header(n.clone(), v.clone()).map_err(internal)?;
    }
    Ok(Box::new(h))
}

/// A decoded non-streaming response.
pub struct Decoded {
    /// The OpenAI `chat.completion` body for the client, usage and cost included.
    pub body: Vec<u8>,
    pub usage: Option<Usage>,
}

/// The upstream request for one attempt: header and body, encoded for this endpoint.
pub fn encode(
    req: &ChatRequest,
    ep: &Endpoint,
) -> Result<(Box<RequestHeader>, Bytes), GatewayError> {
    match ep.provider.kind.codec() {
        Codec::OpenAi => openai::encode(req, ep),
        Codec::Azure => azure::encode(req, ep),
        Codec::Anthropic => anthropic::encode(req, ep),
        Codec::Gemini => gemini::encode(req, ep),
        Codec::Bedrock => bedrock::encode(req, ep),
    }
}

/// Decodes a 2xx non-streaming body; an error means the body is unusable (fall over).
pub fn decode(body: &[u8], ep: &Endpoint) -> Result<Decoded, String> {
    let canonical = match ep.provider.kind.codec() {
        Codec::OpenAi | Codec::Azure => return openai::decode(body, ep),
        Codec::Anthropic => anthropic::decode(body, ep)?,
        Codec::Gemini => gemini::decode(body, ep)?,
        Codec::Bedrock => bedrock::decode(body, ep)?,
    };
    Ok(Decoded {
        body: openai::response_body(&canonical, &ep.price),
        usage: canonical.usage,
    })
}

/// A translator for this endpoint's stream; `include_usage` is what the client asked for.
pub fn stream_translator(ep: &Endpoint, include_usage: bool) -> Box<dyn StreamTranslator> {
    match ep.provider.kind.codec() {
        Codec::OpenAi | Codec::Azure => {
            Box::new(openai::OpenAiStream::new(ep.price, include_usage))
        }
        Codec::Anthropic => Box::new(Translated::new(
            anthropic::StreamDecoder::new(ep),
            ep.price,
            include_usage,
        )),
        Codec::Gemini => Box::new(Translated::new(
            gemini::StreamDecoder::new(ep),
            ep.price,
            include_usage,
        )),
        Codec::Bedrock => Box::new(Translated::new(
            bedrock::StreamDecoder::new(ep),
            ep.price,
            include_usage,
        )),
    }
}

/// What an upstream HTTP status means for the chain: `None` = the answer stands (2xx, or a 4xx
/// that blames the request itself and would fail anywhere).
pub fn classify_status(status: u16, _ep: &Endpoint) -> Option<FallbackReason> {
    match status {
        200..=299 => None,
        400 | 413 | 422 => None,
        408 => Some(FallbackReason::Timeout),
        429 => Some(FallbackReason::RateLimited),
        529 => Some(FallbackReason::Overloaded),
        // Bedrock's ModelErrorException / ModelStreamErrorException: the model failed while
        // processing the request; another endpoint may not.
        424 if _ep.provider.kind == ProviderKind::Bedrock => Some(FallbackReason::ServerError),
        500..=599 => Some(FallbackReason::ServerError),
        // 401/403/404 and the rest: this endpoint is misconfigured or gone; another may work.
        _ => Some(FallbackReason::InvalidResponse),
    }
}
