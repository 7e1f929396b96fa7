"""Reference implementation + held-out score of the keyword fallback classifier (models/keyword_rules.json).

    python3 models/eval_keywords.py            # stdlib only; prints accuracy, macro-F1, per-label F1
    python3 models/eval_keywords.py --train    # the same on train.jsonl (the rules were written against it)

Semantics (port these exactly to Rust, src/classify/keyword.rs):
  text   = common.embed_text(messages, Slice(user_head, user_tail, system_head, lines=lines)) with the rules'
           "slice"; lines = 0 (shipped) is the character-cut rule, common.embed_text_chars:
             u = user if len(user) <= head + tail else user[:head] + " … " + user[len(user) - tail:]
             text = u + " | " + system[:system_head] if system is not whitespace-only else u
  score  = for each label, the sum of the weights "w" of its patterns "p" that match the text at least once;
           every pattern is compiled case-insensitive (Python re.IGNORECASE | Rust (?i)); Unicode \\b and \\w
  label  = the highest score; ties -> the earlier label in "tie_order"; best score < "min_score" -> "default_label"
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, HERE, LABELS, Slice, confusion, embed_text, load_jsonl, report  # noqa: E402


class KeywordClassifier:
    def __init__(self, path: Path = HERE / "keyword_rules.json"):
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
        sl = cfg["slice"]
        self.slice = Slice(sl["user_head"], sl["user_tail"], sl["system_head"], 0, sl["lines"])
        self.default = cfg["default_label"]
        self.min_score = float(cfg["min_score"])
        self.order = cfg["tie_order"]
        self.rules = {lab: [(re.compile(r["p"], re.IGNORECASE), float(r["w"])) for r in rules]
                      for lab, rules in cfg["labels"].items()}
        assert set(self.rules) == set(LABELS) == set(self.order)

    def scores(self, text: str) -> dict[str, float]:
        return {lab: sum(w for rx, w in rules if rx.search(text)) for lab, rules in self.rules.items()}

    def classify(self, messages: list[dict]) -> str:
        sc = self.scores(embed_text(messages, self.slice))
        best = max(self.order, key=lambda lab: (sc[lab], -self.order.index(lab)))
        return best if sc[best] >= self.min_score else self.default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--errors", type=int, default=0, help="print N misclassified items")
    a = ap.parse_args()
    kc = KeywordClassifier()
    items = load_jsonl(DATA / ("train.jsonl" if a.train else "heldout.jsonl"))
    gold = [x["label"] for x in items]
    pred = [kc.classify(x["messages"]) for x in items]
    print(f"keyword rules on {'train' if a.train else 'held-out'}:")
    report("all", gold, pred, LABELS)
    en = [i for i, x in enumerate(items) if x["lang"] == "en"]
    ne = [i for i, x in enumerate(items) if x["lang"] != "en"]
    report("english", [gold[i] for i in en], [pred[i] for i in en], LABELS)
    report("non-english", [gold[i] for i in ne], [pred[i] for i in ne], LABELS)
    confusion(gold, pred, LABELS)
    shown = 0
    for x, g, p in zip(items, gold, pred):
        if g != p and shown < a.errors:
            shown += 1
            print(f"  gold {g:<11} pred {p:<11} {embed_text(x['messages'], kc.slice)[:110]!r}")


if __name__ == "__main__":
    main()
