//! The per-request CPU work of the gateway's hot path, by input size: request parse, encode for
//! each provider's wire format, non-streaming response decode per provider (usage + cost
//! splice), each stream translator's throughput (MB/s), and cost. Recorded provider payloads come
//! from `src/providers/testdata/`. Run: `cargo bench --bench codec`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use signalbox::config::validate::load_str;
use signalbox::ingress::parse::chat_request;
use signalbox::providers;

type Ep = std::sync::Arc<signalbox::config::runtime::Endpoint>;

/// One endpoint per wire format: `p/m` (OpenAI), `an/m`, `ge/m`, `br/m`.
fn endpoints() -> signalbox::config::Config {
    load_str(
        "providers:
  p: {kind: openai, base_url: http://127.0.0.1:1/v1, api_key: k, models: {m: {price: {input: 1.0, output: 2.0}}}}
  an: {kind: anthropic, base_url: http://127.0.0.1:1, api_key: k, models: {m: {price: {input: 1.0, output: 2.0}}}}
  ge: {kind: gemini, base_url: http://127.0.0.1:1, api_key: k, models: {m: {price: {input: 1.0, output: 2.0}}}}
  br:
    kind: bedrock
    base_url: http://127.0.0.1:1
    aws: {region: us-east-1, access_key_id: AKID, secret_access_key: SECRET}
    models: {m: {price: {input: 1.0, output: 2.0}}}
",
        "bench",
        1,
        &|_| None,
    )
    .expect("bench config")
}

fn endpoint() -> Ep {
    endpoints().endpoints["p/m"].clone()
}

/// The bench config's endpoint for a provider label.
fn endpoint_of(provider: &str) -> String {
    match provider {
        "anthropic" => "an/m",
        "gemini" => "ge/m",
        "bedrock" => "br/m",
        _ => "p/m",
    }
    .to_string()
}

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/providers/testdata/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("testdata")
}

/// A realistic agent request of about `size` bytes: a system prompt, a tool, and a history of
/// user/assistant turns.
fn request(size: usize, stream: bool) -> Vec<u8> {
    let mut messages = vec![
        serde_json::json!({"role":"system","content":"You are a planning agent. Think step by step."}),
    ];
    let mut i = 0;
    while serde_json::to_vec(&messages).map(|v| v.len()).unwrap_or(0) < size {
        messages.push(serde_json::json!({"role": if i % 2 == 0 {"user"} else {"assistant"},
            "content": format!("Step {i}: the build failed at src/lib.rs line {i} with error E0308; what next? ")}));
        i += 1;
    }
    serde_json::to_vec(&serde_json::json!({
        "model": "p/m", "stream": stream, "temperature": 0.2, "messages": messages,
        "tools": [{"type":"function","function":{"name":"run","parameters":{"type":"object","properties":{"cmd":{"type":"string"}}}}}],
        "metadata": {"trace": "abc"},
    }))
    .expect("json")
}

fn bench_request(c: &mut Criterion) {
    let cfg = endpoints();
    let mut g = c.benchmark_group("request");
    for size in [1024, 10 * 1024, 100 * 1024] {
        let body = request(size, false);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", size), &body, |b, body| {
            b.iter(|| chat_request(black_box(body)).expect("parse"))
        });
        let req = chat_request(&body).expect("parse");
        for (name, id) in [
            ("encode_openai", "p/m"),
            ("encode_anthropic", "an/m"),
            ("encode_gemini", "ge/m"),
            ("encode_bedrock_sigv4", "br/m"),
        ] {
            let ep = cfg.endpoints[id].clone();
            g.bench_with_input(BenchmarkId::new(name, size), &req, |b, req| {
                b.iter(|| providers::encode(black_box(req), &ep).expect("encode"))
            });
        }
    }
    g.finish();
}

/// Non-streaming decode of each provider's recorded response, and a stream translator over
/// each provider's recorded stream, fed in 512-byte reads.
fn bench_providers(c: &mut Criterion) {
    let cfg = endpoints();
    let mut g = c.benchmark_group("decode");
    for (id, file) in [
        ("anthropic", "anthropic/response_tool_use.json"),
        ("gemini", "gemini/response_function_call.json"),
        ("bedrock", "bedrock/converse_tool_use.json"),
    ] {
        let ep = cfg.endpoints[&endpoint_of(id)].clone();
        let body = testdata(file);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{id}_{}B", body.len()), |b| {
            b.iter(|| providers::decode(black_box(&body), &ep, ep.price).expect("decode"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("sse");
    for (id, file) in [
        ("anthropic", "anthropic/stream_tool_use.sse"),
        ("gemini", "gemini/stream_text_tool_call.sse"),
        ("bedrock", "bedrock/converse_stream_tools.bin"),
    ] {
        let ep = cfg.endpoints[&endpoint_of(id)].clone();
        let mut stream = testdata(file);
        // Recorded SSE files end at the last event's data line; the wire has its blank line.
        if file.ends_with(".sse") && !stream.ends_with(b"\n\n") {
            stream.extend_from_slice(b"\n\n");
        }
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(format!("{id}_{}B", stream.len()), |b| {
            let mut out = Vec::with_capacity(stream.len() * 2);
            b.iter(|| {
                let mut t = providers::stream_translator(&ep, ep.price, true);
                out.clear();
                for chunk in stream.chunks(512) {
                    t.feed(chunk, &mut out).expect("feed");
                }
                t.finish(&mut out).expect("finish");
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_cost(c: &mut Criterion) {
    let ep = endpoint();
    let u = signalbox::llm::Usage {
        prompt_tokens: 1_200,
        completion_tokens: 300,
        cached_tokens: 1_024,
        reasoning_tokens: 200,
        cache_write_tokens: 0,
    };
    c.bench_function("cost_and_format_3_fields", |b| {
        b.iter(|| {
            let c = signalbox::accounting::cost::cost(black_box(&u), &ep.price);
            (
                signalbox::accounting::cost::fmt_usd(c.total()),
                signalbox::accounting::cost::fmt_usd(c.input),
                signalbox::accounting::cost::fmt_usd(c.output),
            )
        })
    });
}

fn bench_response(c: &mut Criterion) {
    let ep = endpoint();
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a short answer of about forty tokens, the usual size of an agent step's reply when it only plans the next tool call."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":40,"total_tokens":1240,"prompt_tokens_details":{"cached_tokens":1024}},"system_fingerprint":"fp"}"#;
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_openai_450B", |b| {
        b.iter(|| providers::decode(black_box(body), &ep, ep.price).expect("decode"))
    });
    g.finish();

    // A 200-token stream with a usage chunk, fed in 512-byte reads.
    let mut stream = Vec::new();
    for i in 0..200 {
        stream.extend_from_slice(format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n").as_bytes());
    }
    stream.extend_from_slice(b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":200,\"total_tokens\":210}}\n\ndata: [DONE]\n\n");
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function(format!("openai_passthrough_{}B", stream.len()), |b| {
        let mut out = Vec::with_capacity(stream.len() + 256);
        b.iter(|| {
            let mut t = providers::stream_translator(&ep, ep.price, true);
            out.clear();
            for chunk in stream.chunks(512) {
                t.feed(chunk, &mut out).expect("feed");
            }
            t.finish(&mut out).expect("finish");
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_request,
    bench_response,
    bench_providers,
    bench_cost
);
criterion_main!(benches);
