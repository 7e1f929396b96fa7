//! The task classifier: the Rust keyword rules against the Python reference, the Rust model path
//! against Python's logits, and `signalbox/auto` through a real gateway with and without the model.
//!
//! The model tests need `models/classifier.onnx`, `models/tokenizer.json`,
//! `models/data/heldout_logits.jsonl` and ONNX Runtime (`scripts/models.sh`). Without them they
//! print `SKIPPED ...` and pass, unless `SIGNALBOX_REQUIRE_CLASSIFIER=1` (set by
//! `scripts/test.sh`, so CI cannot skip them silently) makes that a failure.
//! `SIGNALBOX_CLASSIFIER_DIR` points them at another directory holding the three model files.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sha2::{Digest, Sha256};
use signalbox::classify::{KeywordRules, OnnxModel, embed_text, keyword};
use signalbox::config::schema::TASKS;
use signalbox::llm::{ChatRequest, Message};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn messages(v: &serde_json::Value) -> Vec<Message> {
    let r: ChatRequest = serde_json::from_value(serde_json::json!({"model": "m", "messages": v}))
        .unwrap_or_else(|e| panic!("messages do not parse ({e}): {v}"));
    r.messages
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---- keyword rules: Rust == Python ------------------------------------------------------------

#[test]
fn keyword_rules_match_python_on_every_heldout_item() {
    let fixture = root().join("tests/fixtures/keyword_heldout.jsonl");
    let lines = jsonl(&fixture);
    let (header, items) = lines.split_first().expect("fixture header");
    let regen = "regenerate it: python3 scripts/keyword_fixture.py";
    assert_eq!(
        header["rules_sha256"].as_str(),
        Some(sha256_hex(keyword::RULES_JSON.as_bytes()).as_str()),
        "tests/fixtures/keyword_heldout.jsonl was written for other keyword rules; {regen}"
    );
    let heldout = std::fs::read(root().join("models/data/heldout.jsonl")).expect("heldout.jsonl");
    assert_eq!(
        header["heldout_sha256"].as_str(),
        Some(sha256_hex(&heldout).as_str()),
        "tests/fixtures/keyword_heldout.jsonl was written for another held-out split; {regen}"
    );
    assert_eq!(header["items"].as_u64(), Some(items.len() as u64));
    assert!(items.len() >= 400, "held-out split too small");

    let rules = KeywordRules::builtin().expect("rules");
    let mut failures = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let m = messages(&item["messages"]);
        let text = embed_text(&m, rules.slice());
        if text != item["text"].as_str().unwrap_or_default() {
            failures.push(format!("item {n}: sliced text differs: {text:?}"));
            continue;
        }
        let scores = rules.scores(&text);
        for (t, name) in TASKS[..8].iter().enumerate() {
            let want = item["scores"][name].as_f64().unwrap_or(f64::NAN);
            if scores[t] != want {
                failures.push(format!(
                    "item {n}: score {name} is {} in Rust, {want} in Python",
                    scores[t]
                ));
            }
        }
        let got = TASKS[rules.classify(&m)];
        if Some(got) != item["label"].as_str() {
            failures.push(format!(
                "item {n}: label {got} in Rust, {} in Python",
                item["label"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- the model: Rust == Python ----------------------------------------------------------------

struct Assets {
    runtime: PathBuf,
    model: PathBuf,
    tokenizer: PathBuf,
    logits: PathBuf,
}

fn assets(need_logits: bool) -> Result<Assets, String> {
    assets_in(
        std::env::var_os("SIGNALBOX_CLASSIFIER_DIR").map(PathBuf::from),
        need_logits,
    )
}

/// `dir`: a model directory holding `classifier.onnx`, `tokenizer.json` and
/// `heldout_logits.jsonl`; `None` = the default model (`models/`).
fn assets_in(dir: Option<PathBuf>, need_logits: bool) -> Result<Assets, String> {
    let a = Assets {
        runtime: root().join("models/cache/onnxruntime/libonnxruntime.so"),
        model: dir
            .as_ref()
            .map_or(root().join("models/classifier.onnx"), |d| {
                d.join("classifier.onnx")
            }),
        tokenizer: dir
            .as_ref()
            .map_or(root().join("models/tokenizer.json"), |d| {
                d.join("tokenizer.json")
            }),
        logits: dir
            .as_ref()
            .map_or(root().join("models/data/heldout_logits.jsonl"), |d| {
                d.join("heldout_logits.jsonl")
            }),
    };
    for p in [&a.runtime, &a.model, &a.tokenizer, &a.logits] {
        if !p.is_file() && (need_logits || *p != a.logits) {
            return Err(format!("{} is missing", p.display()));
        }
    }
    Ok(a)
}

/// The model files, or `None` after saying why the test is skipped.
fn assets_or_skip(test: &str, need_logits: bool) -> Option<Assets> {
    match assets(need_logits) {
        Ok(a) => Some(a),
        Err(why) if std::env::var_os("SIGNALBOX_REQUIRE_CLASSIFIER").is_some() => {
            panic!("{test}: {why} (SIGNALBOX_REQUIRE_CLASSIFIER is set; run scripts/models.sh)")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: {why}; run scripts/models.sh (SIGNALBOX_REQUIRE_CLASSIFIER=1 makes this a failure)"
            );
            None
        }
    }
}

#[test]
fn onnx_logits_match_python_on_every_heldout_item() {
    let Some(a) = assets_or_skip("onnx_logits_match_python_on_every_heldout_item", true) else {
        return;
    };
    parity(&a);
}

/// The opt-in multilingual model (`models/multilingual/`) too.
#[test]
fn multilingual_onnx_logits_match_python_on_every_heldout_item() {
    if std::env::var_os("SIGNALBOX_CLASSIFIER_DIR").is_some() {
        return; // the variant under test is the one above
    }
    match assets_in(Some(root().join("models/multilingual")), true) {
        Ok(a) => parity(&a),
        Err(why) if std::env::var_os("SIGNALBOX_REQUIRE_CLASSIFIER").is_some() => panic!("{why}"),
        Err(why) => eprintln!("SKIPPED multilingual parity: {why}"),
    }
}

fn parity(a: &Assets) {
    let model = OnnxModel::load(&a.runtime, &a.model, &a.tokenizer, 1).expect("model loads");
    let heldout = jsonl(&root().join("models/data/heldout.jsonl"));
    let reference = jsonl(&a.logits);
    assert_eq!(
        heldout.len(),
        reference.len(),
        "heldout_logits.jsonl is for another held-out split (models/eval.py rewrites it)"
    );
    let mut failures = Vec::new();
    let mut worst = 0.0f64;
    for (n, (item, want)) in heldout.iter().zip(&reference).enumerate() {
        let text = embed_text(&messages(&item["messages"]), model.slice());
        if text != want["text"].as_str().unwrap_or_default() {
            failures.push(format!("item {n}: embedded text differs: {text:?}"));
            continue;
        }
        let (ids, logits) = model.logits(&text).expect("inference");
        let want_ids: Vec<i64> = want["input_ids"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_i64()).collect())
            .unwrap_or_default();
        if ids != want_ids {
            failures.push(format!("item {n}: token ids differ"));
            continue;
        }
        let want_logits: Vec<f64> = want["logits"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        assert_eq!(logits.len(), want_logits.len(), "item {n}: logits length");
        for (g, w) in logits.iter().zip(&want_logits) {
            let d = (f64::from(*g) - w).abs();
            worst = worst.max(d);
            if d > 1e-4 {
                failures.push(format!("item {n}: logit {g} vs {w}"));
            }
        }
        let pred = model.predict(&text).expect("predict");
        if Some(TASKS[pred.task]) != want["pred"].as_str() {
            failures.push(format!(
                "item {n}: argmax {} vs {}",
                TASKS[pred.task], want["pred"]
            ));
        }
    }
    eprintln!(
        "onnx parity: {} items, max |logit diff| {worst:.2e}",
        reference.len()
    );
    assert!(
        failures.is_empty(),
        "{} difference(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- through the gateway ----------------------------------------------------------------------

fn catalog(e: &Proc) -> String {
    format!(
        r#"  emu:
    kind: openai
    base_url: http://127.0.0.1:{}/v1
    api_key: sk-upstream
    models:
      big: {{upstream_model: "gpt-4o", price: {{input: 2.0, output: 8.0}}}}
      small: {{upstream_model: "gpt-4o-mini", price: {{input: 0.1, output: 0.4}}}}
"#,
        e.port
    )
}

const ROUTING: &str = r#"routing:
  default_task: chat
  chains:
    reasoning: [emu/big]
    code: [emu/big, emu/small]
    creative: [emu/big]
    rewrite: [emu/small]
    chat: [emu/small]
    extraction: [emu/small]
    summarize: [emu/small]
    translation: [emu/small, emu/big]
    tool_use: [emu/big]
    multimodal: [emu/big]
"#;

fn classifier_yaml(runtime: &Path, model: &Path, tokenizer: &Path) -> String {
    format!(
        "classifier:\n  onnxruntime: \"{}\"\n  model: \"{}\"\n  tokenizer: \"{}\"\n  budget_ms: 2000\n",
        runtime.display(),
        model.display(),
        tokenizer.display()
    )
}

fn ask(gw: &Gateway, prompt: &str, headers: &[(&str, &str)]) -> Response {
    let body = serde_json::json!({
        "model": "signalbox/auto",
        "messages": [{"role": "user", "content": prompt}],
    });
    let mut r = Req::post(gw.proc.port, "/v1/chat/completions", body.to_string());
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.send()
}

const CODING: &str = "My Flask endpoint crashes with `TypeError: 'NoneType' object is not subscriptable` \
    when the request has no JSON body. Here is the handler:\n\n```python\n@app.post('/items')\ndef create():\n    \
    name = request.get_json()['name']\n    return {'id': db.insert(name)}\n```\nHow do I fix it?";
const TRANSLATION: &str = "Translate into Spanish: \"Your order has shipped and will arrive within three business days.\"";

#[test]
fn auto_routing_takes_the_task_from_the_model() {
    let Some(a) = assets_or_skip("auto_routing_takes_the_task_from_the_model", false) else {
        return;
    };
    let e = emulator(&[]);
    let extra = format!(
        "{ROUTING}{}",
        classifier_yaml(&a.runtime, &a.model, &a.tokenizer)
    );
    let gw = start_gateway_with(&catalog(&e), "  {}", &extra);
    let ready = Req::get(gw.proc.port, "/readyz").send().json();
    assert_eq!(ready["classifier"], "onnx", "{ready}");

    let r = ask(&gw, CODING, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-task"), Some("code"));
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2"));

    let r = ask(&gw, TRANSLATION, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-task"), Some("translation"));
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2"));

    // The same prompt again (a cache hit) gives the same answer.
    let r = ask(&gw, TRANSLATION, &[]);
    assert_eq!(r.header("x-signalbox-task"), Some("translation"));

    // A task header skips the classifier.
    let r = ask(&gw, TRANSLATION, &[("X-Signalbox-Task", "creative")]);
    assert_eq!(r.header("x-signalbox-task"), Some("creative"));
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2"));
}

#[test]
fn without_the_runtime_the_gateway_serves_with_the_keyword_rules() {
    let e = emulator(&[]);
    let dir = TempDir::new();
    let missing = dir.0.join("nowhere/libonnxruntime.so");
    let extra = format!(
        "{ROUTING}{}",
        classifier_yaml(
            &missing,
            &root().join("models/classifier.onnx"),
            &root().join("models/tokenizer.json")
        )
    );
    let gw = start_gateway_with(&catalog(&e), "  {}", &extra);
    let ready = Req::get(gw.proc.port, "/readyz").send().json();
    let status = ready["classifier"].as_str().unwrap_or_default();
    assert!(status.starts_with("keyword ("), "{ready}");
    assert!(status.contains("nowhere/libonnxruntime.so"), "{ready}");

    let r = ask(&gw, CODING, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2_keyword"));
    assert_eq!(r.header("x-signalbox-task"), Some("code"));
    let r = ask(&gw, TRANSLATION, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2_keyword"));
    assert_eq!(r.header("x-signalbox-task"), Some("translation"));
    // Pinned and logical models never reach the classifier.
    let body = serde_json::json!({"model": "emu/small", "messages": [{"role": "user", "content": TRANSLATION}]});
    let r = Req::post(gw.proc.port, "/v1/chat/completions", body.to_string()).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-task"), None);
}

#[test]
fn a_disabled_classifier_uses_the_keyword_rules() {
    let e = emulator(&[]);
    let extra = format!("{ROUTING}classifier:\n  enabled: false\n");
    let gw = start_gateway_with(&catalog(&e), "  {}", &extra);
    let ready = Req::get(gw.proc.port, "/readyz").send().json();
    assert!(
        ready["classifier"]
            .as_str()
            .is_some_and(|s| s.starts_with("keyword (disabled")),
        "{ready}"
    );
    let r = ask(&gw, CODING, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-router-version"), Some("v2_keyword"));
    assert_eq!(r.header("x-signalbox-task"), Some("code"));
}
