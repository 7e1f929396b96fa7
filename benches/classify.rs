//! The task classifier's cost per call, by prompt size: the model (slice + tokenize + run +
//! softmax) on the calling thread, the same through the request path (semaphore +
//! `spawn_blocking`), and the keyword rules. Every call is a cache miss (distinct prompts, cache
//! off) and the time budget is off, so neither the cache nor the fallback hides the model's cost.
//!
//!     scripts/models.sh && taskset -c 0 cargo bench --bench classify
//!
//! Prompt groups as in `models/eval.py --bench`: short (user turn < 100 chars), typical
//! (100..2000), long (a pasted 8-40 kB document with the instruction at the end). Besides
//! criterion's estimates it prints p50/p99 over one pass of distinct prompts per group, the
//! model's load time and the RSS it adds. Without the model files only the keyword rules run.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use signalbox::classify::{Classifier, KeywordRules, OnnxModel};
use signalbox::config::runtime::ClassifierSettings;
use signalbox::llm::{ChatRequest, Message};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn parse(messages: serde_json::Value) -> Vec<Message> {
    serde_json::from_value::<ChatRequest>(serde_json::json!({"model": "m", "messages": messages}))
        .map(|r| r.messages)
        .unwrap_or_default()
}

/// Deterministic pseudo-random numbers (the bench must not depend on a seed crate).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

struct Groups(Vec<(&'static str, Vec<Vec<Message>>)>);

fn groups() -> Groups {
    let mut items = jsonl(&root().join("models/data/heldout.jsonl"));
    items.extend(jsonl(&root().join("models/data/train.jsonl")));
    let last_user = |x: &serde_json::Value| {
        x["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut short = Vec::new();
    let mut typical = Vec::new();
    let mut docs = Vec::new();
    for x in &items {
        let u = last_user(x);
        let n = u.chars().count();
        if n < 100 && short.len() < 400 {
            short.push(parse(x["messages"].clone()));
        } else if (100..2000).contains(&n) && typical.len() < 400 {
            typical.push(parse(x["messages"].clone()));
        }
        if n > 300 {
            docs.push(u);
        }
    }
    if docs.is_empty() {
        docs.push("The quarterly report shows revenue up 4% and costs flat. ".repeat(8));
    }
    if short.is_empty() {
        short = (0..100)
            .map(|i| parse(serde_json::json!([{"role":"user","content": format!("({i}) fix my bug please")}])))
            .collect();
    }
    if typical.is_empty() {
        typical = (0..100)
            .map(|i| {
                parse(serde_json::json!([{"role":"user","content": format!("({i}) {}", docs[0])}]))
            })
            .collect();
    }
    let mut rng = Lcg(7);
    let long = (0..200)
        .map(|i| {
            let n = 8000 + rng.below(32000);
            let mut body = String::new();
            while body.len() < n {
                body.push_str(&docs[rng.below(docs.len())]);
                body.push_str("\n\n");
            }
            let cut = (0..=n.min(body.len()))
                .rev()
                .find(|&j| body.is_char_boundary(j))
                .unwrap_or(0);
            body.truncate(cut);
            parse(serde_json::json!([
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": format!("{body}\n\n({i}) Summarize the above in five bullet points.")},
            ]))
        })
        .collect();
    Groups(vec![("short", short), ("typical", typical), ("long", long)])
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn load_model() -> Option<OnnxModel> {
    let dir =
        std::env::var_os("SIGNALBOX_CLASSIFIER_DIR").map_or(root().join("models"), PathBuf::from);
    let before = rss_kb();
    match OnnxModel::load(
        &root().join("models/cache/onnxruntime/libonnxruntime.so"),
        &dir.join("classifier.onnx"),
        &dir.join("tokenizer.json"),
        1,
    ) {
        Ok(m) => {
            println!(
                "model: {} | load {:.0} ms (runtime + 1 session + warm-up) | RSS +{:.1} MB",
                m.description,
                m.load_time.as_secs_f64() * 1e3,
                (rss_kb().saturating_sub(before)) as f64 / 1024.0
            );
            Some(m)
        }
        Err(e) => {
            println!("model not benchmarked: {e} (run scripts/models.sh)");
            None
        }
    }
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{name:<32} n={:<4} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

fn bench(c: &mut Criterion) {
    let groups = groups();
    let rules = KeywordRules::builtin().expect("keyword rules");
    // One session: the numbers are per core.
    let classifier = load_model().map(|m| Classifier::with_model(m, 0));
    let model: Option<Arc<OnnxModel>> = classifier.as_ref().and_then(|c| c.model().cloned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The request path as the gateway runs it, minus the cache and the budget.
    let settings = ClassifierSettings {
        budget: None,
        min_confidence: 0.0,
        cache_entries: 0,
        ..ClassifierSettings::default()
    };

    // One pass of distinct prompts per group: the percentiles criterion does not report.
    // Only under `cargo bench` (criterion's `--bench`), not as a `cargo test` smoke run.
    let percentile_pass = std::env::args().any(|a| a == "--bench");
    for (name, prompts) in groups.0.iter().filter(|_| percentile_pass) {
        if let Some(m) = &model {
            for p in prompts.iter().take(20) {
                let _ = m.predict(&signalbox::classify::embed_text(p, m.slice()));
            }
            let mut t = Vec::with_capacity(prompts.len());
            let mut tokens = 0usize;
            for p in prompts {
                let start = Instant::now();
                let text = signalbox::classify::embed_text(p, m.slice());
                black_box(m.predict(&text).ok());
                t.push(start.elapsed());
                tokens += m.encode(&text).map(|(ids, _)| ids.len()).unwrap_or(0);
            }
            println!(
                "tokens per {name} prompt: mean {:.1}",
                tokens as f64 / prompts.len().max(1) as f64
            );
            percentiles(&format!("model {name}"), t);
        }
        if let Some(cl) = &classifier {
            let mut t = Vec::with_capacity(prompts.len());
            for p in prompts {
                let start = Instant::now();
                black_box(rt.block_on(cl.classify(p, &settings)));
                t.push(start.elapsed());
            }
            percentiles(&format!("request path {name}"), t);
        }
        let mut t = Vec::with_capacity(prompts.len());
        for p in prompts {
            let start = Instant::now();
            black_box(rules.classify(p));
            t.push(start.elapsed());
        }
        percentiles(&format!("keyword {name}"), t);
    }

    let mut g = c.benchmark_group("classify");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, prompts) in &groups.0 {
        if let Some(m) = &model {
            let mut i = 0;
            g.bench_function(BenchmarkId::new("model", name), |b| {
                b.iter(|| {
                    i = (i + 1) % prompts.len();
                    m.predict(&signalbox::classify::embed_text(&prompts[i], m.slice()))
                        .ok()
                })
            });
        }
        if let Some(cl) = &classifier {
            let mut i = 0;
            g.bench_function(BenchmarkId::new("request_path", name), |b| {
                b.iter(|| {
                    i = (i + 1) % prompts.len();
                    rt.block_on(cl.classify(&prompts[i], &settings))
                })
            });
        }
        let mut i = 0;
        g.bench_function(BenchmarkId::new("keyword", name), |b| {
            b.iter(|| {
                i = (i + 1) % prompts.len();
                rules.classify(&prompts[i])
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
