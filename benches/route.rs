//! The routing decision on the shipped catalog (`conf/signalbox.yaml`: 17 endpoints, chains 3-4
//! deep): `plan()` for `signalbox/auto` with a task header and live stats on every endpoint, and
//! for a logical model. Run: `cargo bench --bench route`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

use signalbox::config::validate::load_str;
use signalbox::route::plan::{Hints, PlanInput, plan, task_index};
use signalbox::route::stats::{Outcome, StatsRegistry, StatsSettings};

fn bench_plan(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/signalbox.yaml"))
        .expect("catalog");
    let cfg = load_str(&text, "signalbox.yaml", 1, &|name| {
        // Distinct placeholder hashes per key variable; any string for credentials.
        Some(if name.ends_with("SHA256") {
            format!("{:064x}", name.len())
        } else {
            "x".to_string()
        })
    })
    .expect("shipped catalog");
    let stats = StatsRegistry::new(StatsSettings::default());
    let now = tokio::time::Instant::now();
    for (i, id) in cfg.endpoint_order.iter().enumerate() {
        let s = stats.get(id);
        for j in 0..50 {
            s.record(
                now,
                Outcome::Ok,
                Some(Duration::from_millis(200 + (i * 37 + j) as u64 % 300)),
                Some(Duration::from_millis(20)),
            );
        }
        s.refresh(now);
    }
    // The platform key may use every model (the support key is limited to cheap ones).
    let key = cfg
        .keys
        .values()
        .find(|k| k.id == "platform-team")
        .expect("the platform key")
        .clone();
    let body = serde_json::json!({"model": "signalbox/auto", "messages": [
        {"role": "system", "content": "You are a planning agent."},
        {"role": "user", "content": "Plan the migration of our billing service to the new queue; list risks."}]});
    let req =
        signalbox::ingress::parse::chat_request(body.to_string().as_bytes()).expect("request");
    let hints = Hints {
        task: task_index("reasoning"),
        ..Default::default()
    };
    c.bench_function("plan_auto_reasoning_17_endpoints", |b| {
        b.iter(|| {
            let input = PlanInput {
                key: &key,
                hints: &hints,
                stats: &stats,
                classified: None,
                now,
            };
            black_box(
                plan(&cfg, black_box(&req), &input)
                    .expect("plan")
                    .chain
                    .len(),
            )
        })
    });
    let body = serde_json::json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]});
    let req =
        signalbox::ingress::parse::chat_request(body.to_string().as_bytes()).expect("request");
    let hints = Hints::default();
    c.bench_function("plan_logical_model_2_deployments", |b| {
        b.iter(|| {
            let input = PlanInput {
                key: &key,
                hints: &hints,
                stats: &stats,
                classified: None,
                now,
            };
            black_box(
                plan(&cfg, black_box(&req), &input)
                    .expect("plan")
                    .chain
                    .len(),
            )
        })
    });
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
