"""Held-out evaluation of models/classifier.onnx, reference logits for the Rust test, and latency.

    VENV=/root/.cache/signalbox-models-venv
    $VENV/bin/python models/eval.py            # metrics + writes models/data/heldout_logits.jsonl
    $VENV/bin/python models/eval.py --bench    # + latency (1 intra-op thread; tokenize + run), short/typical/long
    $VENV/bin/python models/eval.py --model X --tokenizer Y --check   # compare X against heldout_logits.jsonl

Everything the model needs comes from the ONNX metadata (labels, text slice, token cap): this script uses
only classifier.onnx, tokenizer.json and common.embed_text, as the gateway does.
heldout_logits.jsonl, one line per held-out item, in file order:
  {"i": n, "label": gold, "lang": .., "text": <the exact embedded text>, "input_ids": [...], "logits": [8 floats],
   "pred": label}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, HERE, Slice, confusion, embed_text, f1_table, load_jsonl, load_tokenizer, report  # noqa: E402

REF = DATA / "heldout_logits.jsonl"


def open_model(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1000
    meta = sess.get_modelmeta().custom_metadata_map
    labels = meta["labels"].split(",")
    s = Slice(int(meta["user_head"]), int(meta["user_tail"]), int(meta["system_head"]), int(meta["max_tokens"]),
              int(meta.get("lines", 0)))
    return sess, labels, s, meta, load_ms


def run(sess, tok, text: str) -> tuple[list[int], np.ndarray]:
    e = tok.encode(text)
    out = sess.run(["logits"], {"input_ids": np.asarray([e.ids], np.int64),
                                "attention_mask": np.asarray([e.attention_mask], np.int64)})[0][0]
    return e.ids, out


def gated_report(heldout, rows, labels) -> None:
    """The system as the gateway runs it: the model answers when its top softmax probability reaches the
    threshold chosen on train (data/threshold_cv.json), else the keyword rules answer."""
    from eval_keywords import KeywordClassifier

    path = DATA / "threshold_cv.json"
    if not path.exists():
        return
    chosen = json.loads(path.read_text())["chosen"]
    kc = KeywordClassifier()
    kw = [kc.classify(x["messages"]) for x in heldout]
    gold = [x["label"] for x in heldout]
    conf = []
    for r in rows:
        z = np.array(r["logits"]); p = np.exp(z - z.max()); conf.append(float((p / p.sum()).max()))
    for tau in sorted({0.5, 0.7, chosen}):
        pred = [r["pred"] if c >= tau else k for r, c, k in zip(rows, conf, kw)]
        share = sum(c >= tau for c in conf) / len(conf)
        report(f"gated@{tau:.2f}" + ("*" if tau == chosen else ""), gold, pred, labels)
        en = [i for i, x in enumerate(heldout) if x["lang"] == "en"]
        ne = [i for i, x in enumerate(heldout) if x["lang"] != "en"]
        f_en = f1_table([gold[i] for i in en], [pred[i] for i in en], labels)[1]
        f_ne = f1_table([gold[i] for i in ne], [pred[i] for i in ne], labels)[1]
        print(f"    (model answers {share:.0%}, keyword rules the rest; macro-F1 english {f_en:.3f}, "
              f"non-english {f_ne:.3f}; * = threshold chosen on train)")


def bench(sess, tok, s: Slice, heldout, train) -> None:
    """p50/p99 of embed_text + tokenize + run, one distinct prompt per call (no cache), 1 thread."""
    rng = np.random.default_rng(7)
    docs = [x["messages"][-1]["content"] for x in heldout + train if len(x["messages"][-1]["content"]) > 300]

    def long_item(i):  # a pasted document of 8-40 kB with an instruction at the end
        n = int(rng.integers(8000, 40000))
        body = ""
        while len(body) < n:
            body += docs[int(rng.integers(len(docs)))] + "\n\n"
        return [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": body[:n] + f"\n\n({i}) Summarize the above in five bullet points."}]

    def user_len(x):
        return len(x["messages"][-1]["content"])

    groups = {
        "short (<100 chars)": [x["messages"] for x in heldout + train if user_len(x) < 100][:400],
        "typical (100-2k)": [x["messages"] for x in heldout + train if 100 <= user_len(x) < 2000][:400],
        "long (8-40 kB)": [long_item(i) for i in range(200)],
    }
    for _ in range(30):  # warm-up
        run(sess, tok, embed_text(groups["typical (100-2k)"][0], s))
    for name, items in groups.items():
        ts, ntok = [], []
        for msgs in items:
            t0 = time.perf_counter()
            ids, _ = run(sess, tok, embed_text(msgs, s))
            ts.append((time.perf_counter() - t0) * 1000)
            ntok.append(len(ids))
        ts = np.array(ts)
        print(f"latency {name:<20} n={len(ts):3d} tokens mean {np.mean(ntok):5.1f}  "
              f"p50 {np.percentile(ts, 50):.2f} ms  p99 {np.percentile(ts, 99):.2f} ms  max {ts.max():.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(HERE / "classifier.onnx"))
    ap.add_argument("--tokenizer", default=str(HERE / "tokenizer.json"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--check", action="store_true", help="compare with heldout_logits.jsonl instead of writing it")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    sess, labels, s, meta, load_ms = open_model(Path(a.model))
    tok = load_tokenizer(Path(a.tokenizer), s.max_tokens)
    heldout = load_jsonl(DATA / "heldout.jsonl")
    print(f"model {a.model}: encoder {meta.get('encoder')} {meta.get('quantization')}, slice {s}, load {load_ms:.0f} ms")

    rows, gold, pred, langs = [], [], [], []
    for i, x in enumerate(heldout):
        text = embed_text(x["messages"], s)
        ids, logits = run(sess, tok, text)
        p = labels[int(np.argmax(logits))]
        rows.append({"i": i, "label": x["label"], "lang": x["lang"], "text": text, "input_ids": ids,
                     "logits": [round(float(v), 6) for v in logits], "pred": p})
        gold.append(x["label"]); pred.append(p); langs.append(x["lang"])

    report("all", gold, pred, labels)
    en = [i for i, l in enumerate(langs) if l == "en"]
    ne = [i for i, l in enumerate(langs) if l != "en"]
    report("english", [gold[i] for i in en], [pred[i] for i in en], labels)
    report("non-english", [gold[i] for i in ne], [pred[i] for i in ne], labels)
    confusion(gold, pred, labels)

    gated_report(heldout, rows, labels)

    if a.check:
        ref = load_jsonl(REF)
        d = max(np.abs(np.array(r["logits"]) - np.array(x["logits"])).max() for r, x in zip(rows, ref))
        same_ids = all(r["input_ids"] == x["input_ids"] for r, x in zip(rows, ref))
        agree = sum(r["pred"] == x["pred"] for r, x in zip(rows, ref))
        print(f"check vs {REF.name}: input_ids identical: {same_ids}; max |logit diff| {d:.2e}; "
              f"argmax agreement {agree}/{len(ref)}")
        if not same_ids or agree < len(ref) * 0.99:
            sys.exit("check failed")
    elif not a.no_write:
        with REF.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {REF} ({len(rows)} items)")

    if a.bench:
        bench(sess, tok, s, heldout, load_jsonl(DATA / "train.jsonl"))


if __name__ == "__main__":
    main()
