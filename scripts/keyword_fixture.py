#!/usr/bin/env python3
"""Writes tests/fixtures/keyword_heldout.jsonl: what the reference keyword classifier
(models/eval_keywords.py) answers on every held-out item and on a few edge cases, for the Rust
port (src/classify/keyword.rs) to reproduce exactly (tests/classify.rs).

    python3 scripts/keyword_fixture.py          # stdlib only; rerun after editing the rules or the data

Line 1 is a header with the sha256 of the inputs, so the test can tell a stale fixture from a bug.
Then one line per item: {"source", "messages", "text" (the sliced text), "scores", "label"}.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
from common import embed_text, load_jsonl  # noqa: E402
from eval_keywords import KeywordClassifier  # noqa: E402

RULES = ROOT / "models" / "keyword_rules.json"
HELDOUT = ROOT / "models" / "data" / "heldout.jsonl"
OUT = ROOT / "tests" / "fixtures" / "keyword_heldout.jsonl"

LONG = "Background: " + "the quarterly numbers 🙂 were flat; " * 40


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# Where Python's re and Rust's regex, or str and &str, could part ways; each must still agree.
EDGE = [
    user("can you help me?\n"),  # `$` before a final newline
    user("ok then;\n"),
    user("hello there!\n\n"),
    user(LONG + " Now translate the above into German."),  # head/tail cut inside astral chars
    user("x" * 10 + "🙂" * 500 + " summarize"),
    [{"role": "system", "content": " \x1c\x1f\t"}, {"role": "user", "content": "please translate"}],
    [{"role": "developer", "content": "You extract fields as JSON."}, {"role": "user", "content": "Invoice 42"}],
    [{"role": "system", "content": "first"}, {"role": "system", "content": "You summarize."},
     {"role": "user", "content": "text"}],
    [{"role": "user", "content": [{"type": "text", "text": "translate"},
                                  {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                                  {"type": "text", "text": "into French"}]}],
    [{"role": "user", "content": "Write a poem"}, {"role": "assistant", "content": "..."},
     {"role": "user", "content": "now make it more formal"}],
    user("TRANSLATE THIS INTO FRENCH"),
    user("WIE HEIẞT MAN das auf Englisch"),  # capital sharp s
    user("Ｔranslate"),  # fullwidth letter: not a word boundary issue, just not ASCII
    user("ſummarize this"),  # long s folds to s
    user("fix the \u212aeyError in my script"),  # Kelvin sign folds to k
    user("Переведи на английский, пожалуйста"),
    user("请把这段话翻译成英文"),
    user(""),
    [],
    # the line rule: first and last non-empty line, trimmed of " \t\r" only
    user("\n \t\r\n  Summarize this:\r\n" + "body text " * 80 + "\n\n the énd🙂  \n\t\n"),
    user("  one single long line about a poem " + "and more " * 80),
    user("\xa0translate\n\x0b"),
    user("first line\nlast line: translate into French"),
    user(" \n\t\r\n"),
]


def main() -> None:
    kc = KeywordClassifier(RULES)
    items = [("heldout", x["messages"]) for x in load_jsonl(HELDOUT)] + [("edge", m) for m in EDGE]
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"rules_sha256": sha(RULES), "heldout_sha256": sha(HELDOUT),
                            "items": len(items)}) + "\n")
        for source, messages in items:
            text = embed_text(messages, kc.slice)
            scores = kc.scores(text)
            f.write(json.dumps({"source": source, "messages": messages, "text": text,
                                "scores": scores, "label": kc.classify(messages)},
                               ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(items)} items)")


if __name__ == "__main__":
    main()
