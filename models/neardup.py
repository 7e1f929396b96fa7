"""Near-duplicate filter: proves no held-out item is a near duplicate of a training item.

Measure: Jaccard similarity of character 5-gram sets (text lowercased, whitespace collapsed), computed
exactly on hashed 5-grams (2^22 buckets) with a sparse matrix product, for every (held-out, train) pair, on
two views of each item:
  - "all":  every message's content joined with "\\n" (system prompt, history, last turn),
  - "last": the last user turn alone (the text that carries the label).
A pair is a leak when either view reaches THRESHOLD (0.5). Strings shorter than 5 characters are compared
whole. Exits 1 on a leak (models/train.py runs this and stops).

    python models/neardup.py [--threshold 0.5] [--show 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np
from scipy import sparse

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.5
BUCKETS = 1 << 22


def _content(m) -> str:
    c = m.get("content")
    if isinstance(c, list):
        return "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c or ""


def views(item) -> tuple[str, str]:
    msgs = item["messages"]
    last = next((_content(m) for m in reversed(msgs) if m["role"] == "user"), "")
    return "\n".join(_content(m) for m in msgs), last


def norm(s: str) -> str:
    return " ".join(s.lower().split())


def shingles(s: str, k: int = 5) -> set[int]:
    s = norm(s)
    grams = {s} if len(s) < k else {s[i:i + k] for i in range(len(s) - k + 1)}
    return {zlib.crc32(g.encode()) % BUCKETS for g in grams}


def matrix(texts: list[str]) -> sparse.csr_matrix:
    rows, cols = [], []
    for i, t in enumerate(texts):
        sh = shingles(t)
        rows.extend([i] * len(sh))
        cols.extend(sh)
    data = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), BUCKETS))


def max_jaccard(a_texts: list[str], b_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each text of a, the highest Jaccard against b and the index of that b item."""
    A, B = matrix(a_texts), matrix(b_texts)
    inter = (A @ B.T).toarray()
    na = np.asarray(A.sum(axis=1)).reshape(-1, 1)
    nb = np.asarray(B.sum(axis=1)).reshape(1, -1)
    jac = inter / np.maximum(na + nb - inter, 1)
    return jac.max(axis=1), jac.argmax(axis=1)


def check(train: list[dict], heldout: list[dict], threshold: float = THRESHOLD, show: int = 5, out=sys.stdout) -> bool:
    tv = [views(x) for x in train]
    hv = [views(x) for x in heldout]
    leaks = []
    report = {}
    for k, name in enumerate(("all", "last")):
        best, arg = max_jaccard([v[k] for v in hv], [v[k] for v in tv])
        report[name] = best
        for i in np.where(best >= threshold)[0]:
            leaks.append((float(best[i]), name, int(i), int(arg[i])))
        order = np.argsort(-best)[:show]
        print(f"near-dup [{name}]: max Jaccard(char 5-gram) held-out vs train: max {best.max():.3f}, "
              f"p99 {np.percentile(best, 99):.3f}, median {np.median(best):.3f}", file=out)
        for i in order:
            print(f"    {best[i]:.3f}  heldout#{i} {norm(hv[i][k])[:70]!r}  ~ train#{arg[i]} {norm(tv[arg[i]][k])[:70]!r}",
                  file=out)
    if leaks:
        print(f"near-dup: {len(leaks)} LEAK(S) at threshold {threshold}:", file=out)
        for j, name, i, t in sorted(leaks, reverse=True):
            print(f"    {j:.3f} [{name}] heldout#{i} {norm(hv[i][1])[:80]!r} ~ train#{t} {norm(tv[t][1])[:80]!r}", file=out)
        return False
    print(f"near-dup: OK, no held-out item reaches Jaccard {threshold} against any of {len(train)} training items", file=out)
    return True


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--show", type=int, default=5)
    ap.add_argument("--train", default=str(HERE / "data" / "train.jsonl"))
    ap.add_argument("--heldout", default=str(HERE / "data" / "heldout.jsonl"))
    a = ap.parse_args()
    ok = check(load(Path(a.train)), load(Path(a.heldout)), a.threshold, a.show)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
