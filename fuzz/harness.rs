//! The fuzzed functions, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the
//! corpus replay that runs in CI (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes and must
//! never panic; `sse` also checks that the parser's events do not depend on how the input is
//! split.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use signalbox::config::runtime::Endpoint;

/// A fuzzed function: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// Every target by name, as the corpus directories are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("sse", sse),
    ("eventstream", eventstream),
    ("stream", stream),
    ("response", response),
    ("request", request),
    ("config", config),
];

/// One endpoint per codec: OpenAI, Azure, Anthropic, Gemini, Bedrock.
fn endpoints() -> &'static [Arc<Endpoint>] {
    static EPS: OnceLock<Vec<Arc<Endpoint>>> = OnceLock::new();
    EPS.get_or_init(|| {
        let yaml = r#"
providers:
  oa:
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: k
    models:
      m: {upstream_model: gpt-4o-mini, price: {input: 1.0, output: 2.0, cached_input: 0.5}}
  az:
    kind: azure
    base_url: https://r.openai.azure.com/openai
    api_key: k
    api_version: "2024-10-21"
    models:
      m: {upstream_model: prod, price: {input: 1.0, output: 2.0}}
  an:
    kind: anthropic
    base_url: https://api.anthropic.com/v1
    api_key: k
    models:
      m: {upstream_model: claude-x, price: {input: 3.0, output: 15.0, cached_input: 0.3}}
  ge:
    kind: gemini
    base_url: https://generativelanguage.googleapis.com/v1beta
    api_key: k
    models:
      m: {upstream_model: gemini-x, price: {input: 0.1, output: 0.4}}
  br:
    kind: bedrock
    base_url: https://bedrock-runtime.us-east-1.amazonaws.com
    aws:
      region: us-east-1
      access_key_id: AKIDEXAMPLE
      secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    models:
      m: {upstream_model: anthropic.claude-x, price: {input: 1.0, output: 5.0}}
"#;
        let cfg = signalbox::config::validate::load_str(yaml, "fuzz", 1, &|_| None)
            .unwrap_or_else(|e| panic!("fuzz endpoints: {e:?}"));
        ["oa/m", "az/m", "an/m", "ge/m", "br/m"]
            .iter()
            .map(|id| cfg.endpoints[*id].clone())
            .collect()
    })
}

/// Splits `data` into pieces whose sizes come from `sizes` (1..=64 each, cycling), so one input
/// exercises many split points.
fn pieces<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |s| 1 + usize::from(*s % 64))
            .min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

type Events = Vec<(Vec<u8>, Vec<u8>)>;

fn sse_events<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Events, ()> {
    let mut p = signalbox::stream::sse::SseParser::new();
    let mut events = Events::new();
    for c in chunks {
        p.feed(
            c,
            |name, data| {
                events.push((name.to_vec(), data.to_vec()));
                Ok(())
            },
            || (),
        )?;
    }
    p.finish(|name, data| {
        events.push((name.to_vec(), data.to_vec()));
        Ok(())
    })?;
    Ok(events)
}

/// The SSE parser: whole, split by the first bytes, and byte by byte, the events are the same.
pub fn sse(data: &[u8]) {
    let whole = sse_events([data]);
    let (sizes, body) = data.split_at(data.len().min(4));
    let split = (sse_events(pieces(body, sizes)), sse_events([body]));
    assert_eq!(split.0, split.1, "events depend on the split");
    if data.len() <= 4096 {
        let bytes = sse_events(data.chunks(1));
        assert_eq!(whole, bytes, "events differ when fed byte by byte");
    }
}

/// Feeds a translator in pieces the way the engine does: stop at the first fault, else finish.
fn translate(ep: &Endpoint, include_usage: bool, data: &[u8], sizes: &[u8]) {
    let mut t = signalbox::providers::stream_translator(ep, ep.price, include_usage);
    let mut out = Vec::new();
    for c in pieces(data, sizes) {
        if t.feed(c, &mut out).is_err() {
            return;
        }
        if t.done() {
            break;
        }
    }
    let _ = t.finish(&mut out);
    let _ = (t.usage(), t.content_started());
}

/// The Bedrock event-stream decoder (binary AWS event-stream frames), through its translator.
pub fn eventstream(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(rest.len().min(3));
    translate(&endpoints()[4], flags & 1 == 1, body, sizes);
}

/// The SSE stream translators: the first byte picks OpenAI, Azure, Anthropic or Gemini.
pub fn stream(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(rest.len().min(3));
    let ep = &endpoints()[usize::from(sel & 3)];
    translate(ep, sel & 0x80 != 0, body, sizes);
}

/// The non-streaming response decoders: the first byte picks the codec.
pub fn response(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ep = &endpoints()[usize::from(sel) % 5];
    let _ = signalbox::providers::decode(body, ep, ep.price);
}

/// The client request parser; a request it accepts is then encoded for every codec.
pub fn request(data: &[u8]) {
    if let Ok(req) = signalbox::ingress::parse::chat_request(data) {
        for ep in endpoints() {
            let _ = signalbox::providers::encode(&req, ep);
        }
    }
}

/// The config loader and validator, on text (invalid UTF-8 is replaced, as a file read as text
/// would refuse it before the loader).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = signalbox::config::validate::load_str(&text, "fuzz", 1, &|_| None);
}
