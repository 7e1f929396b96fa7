"""What train.py, eval.py and eval_keywords.py share: labels, the text-slice rule, data loading, tokenizer.

The text-slice rule (`embed_text`) is the contract with the Rust side (src/classify/): models/README.md
specifies it; every parameter is also written into classifier.onnx's metadata.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CACHE = HERE / "cache"

# Output order of the `logits` columns (also in the model metadata key `labels`).
LABELS = ["reasoning", "code", "creative", "rewrite", "chat", "extraction", "summarize", "translation"]


@dataclass(frozen=True)
class Slice:
    """How much of a request is embedded. Lengths count Unicode scalar values (Rust `char`s)."""
    user_head: int = 160   # first chars of the last user turn
    user_tail: int = 80    # last chars of the last user turn, when it is longer than head + tail
    system_head: int = 64  # first chars of the system prompt (0 = ignore the system prompt)
    max_tokens: int = 48   # tokenizer truncation cap, [CLS] and [SEP] included
    lines: int = 1         # 1: head = first non-empty line, tail = last non-empty line; 0: plain char cuts

    def meta(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


GAP = " … "        # between head and tail of a long user turn
SYSTEM_JOIN = " | "  # between the user slice and the system slice


def content_text(msg: dict) -> str:
    """A message's text: a string content as is; a list content = its `text` parts joined with "\\n"."""
    c = msg.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(p["text"] for p in c if isinstance(p, dict) and p.get("type") == "text"
                         and isinstance(p.get("text"), str))
    return ""


LINE_TRIM = " \t\r"


def embed_text(messages: list[dict], s: Slice) -> str:
    if s.lines:
        return embed_text_lines(messages, s)
    return embed_text_chars(messages, s)


def _user_system(messages: list[dict]) -> tuple[str, str]:
    user = next((content_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    system = next((content_text(m) for m in messages if m.get("role") in ("system", "developer")), "")
    return user, system


def embed_text_lines(messages: list[dict], s: Slice) -> str:
    """The text the classifier embeds (the shipped rule; models/README.md specifies it for Rust).

    user   = text of the LAST message whose role is "user" ("" if none)
    system = text of the FIRST message whose role is "system" or "developer" ("" if none)
    lines  = user split on "\n", each stripped of " \t\r" at both ends, empty ones dropped
    u = ""                                      if there is no line
        lines[0][:head]                         if there is one line
        lines[0][:head] + GAP + last[-tail:]    otherwise, last = lines[-1] (last[-tail:] = its last
                                                `tail` chars, or all of it when shorter)
    out = u + SYSTEM_JOIN + system[:system_head]  if system_head > 0 and system.strip() is not empty, else u
    The instruction of a request sits in its first or its last line ("Summarize this:" / "... Translate the
    above into German."); the pasted document or code in between is what a mean-pooled embedding must not
    be swamped by.
    """
    user, system = _user_system(messages)
    lines = [ln.strip(LINE_TRIM) for ln in user.split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        u = ""
    elif len(lines) == 1 or s.user_tail == 0:
        u = lines[0][:s.user_head]
    else:
        last = lines[-1]
        u = lines[0][:s.user_head] + GAP + last[max(len(last) - s.user_tail, 0):]
    if s.system_head > 0 and system.strip():
        return u + SYSTEM_JOIN + system[:s.system_head]
    return u


def embed_text_chars(messages: list[dict], s: Slice) -> str:
    """The text the classifier embeds for a chat request.

    user   = text of the LAST message whose role is "user" ("" if none)
    system = text of the FIRST message whose role is "system" or "developer" ("" if none)
    u = user                                      if len(user) <= head + tail
        user[:head] + GAP + user[len-tail:]       otherwise (no GAP part when tail == 0)
    out = u + SYSTEM_JOIN + system[:system_head]  if system_head > 0 and system is not empty after strip()
          u                                       otherwise
    Nothing else is normalised: the tokenizer lowercases and splits on whitespace itself.
    """
    user, system = _user_system(messages)
    if len(user) > s.user_head + s.user_tail:
        user = user[:s.user_head] + (GAP + user[len(user) - s.user_tail:] if s.user_tail > 0 else "")
    if s.system_head > 0 and system.strip():
        return user + SYSTEM_JOIN + system[:s.system_head]
    return user


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).open(encoding="utf-8") if line.strip()]


def load_tokenizer(path: Path, max_tokens: int):
    """tokenizer.json with padding OFF and truncation to `max_tokens` (right side, specials included)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens, strategy="longest_first", direction="right")
    return tok


# ---- metrics (stdlib only, shared by eval.py and eval_keywords.py)
def f1_table(gold: list[str], pred: list[str], labels: list[str]) -> tuple[float, float, dict]:
    per = {}
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per[lab] = (2 * prec * rec / (prec + rec) if prec + rec else 0.0, tp + fn)
    present = [lab for lab in labels if per[lab][1] > 0]
    acc = sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1)
    return acc, sum(per[lab][0] for lab in present) / max(len(present), 1), per


def report(name: str, gold, pred, labels) -> None:
    acc, mf1, per = f1_table(gold, pred, labels)
    print(f"{name:<14} n={len(gold):4d}  accuracy {acc:.3f}  macro-F1 {mf1:.3f}")
    print("    " + "  ".join(f"{lab} {per[lab][0]:.2f}" for lab in labels))


def confusion(gold, pred, labels) -> None:
    print("confusion (rows gold, cols predicted): " + " ".join(f"{lab[:5]:>5}" for lab in labels))
    for g in labels:
        print(f"    {g:<12}" + " ".join(f"{sum(1 for a, b in zip(gold, pred) if a == g and b == p):5d}" for p in labels))
