//! The per-request CPU work of the gateway's hot path, by input size: request parse, encode for
//! an OpenAI-compatible upstream, non-streaming response decode (usage + cost splice), and the
//! SSE translator's throughput. Run: `cargo bench --bench codec`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use signalbox::config::validate::load_str;
use signalbox::ingress::parse::chat_request;
use signalbox::providers;

fn endpoint() -> std::sync::Arc<signalbox::config::runtime::Endpoint> {
    let cfg = load_str(
        "providers:\n  p:\n    kind: openai\n    base_url: http://127.0.0.1:1/v1\n    api_key: k\n    models:\n      m: {price: {input: 1.0, output: 2.0}}\n",
        "bench",
        1,
        &|_| None,
    )
    .expect("bench config");
    cfg.endpoints["p/m"].clone()
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
    let ep = endpoint();
    let mut g = c.benchmark_group("request");
    for size in [1024, 10 * 1024, 100 * 1024] {
        let body = request(size, false);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", size), &body, |b, body| {
            b.iter(|| chat_request(black_box(body)).expect("parse"))
        });
        let req = chat_request(&body).expect("parse");
        g.bench_with_input(BenchmarkId::new("encode_openai", size), &req, |b, req| {
            b.iter(|| providers::encode(black_box(req), &ep).expect("encode"))
        });
    }
    g.finish();
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

criterion_group!(benches, bench_request, bench_response);
criterion_main!(benches);
