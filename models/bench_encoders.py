"""Raw encoder cost per sequence length: L3 vs L6, fp32 vs int8 (ORT, 1 intra-op thread, batch 1).

    $VENV/bin/python models/bench_encoders.py      # needs scripts/models.sh --weights

Random token ids (no tokenizer), a fresh array per call, 150 calls per cell (first 20 dropped).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402

LENGTHS = [16, 32, 48, 64, 128]


def main():
    rng = np.random.default_rng(0)
    print("model        " + "  ".join(f"{n:>3} tok p50/p99 ms" for n in LENGTHS))
    for enc in ("l3", "l6"):
        for quant in ("fp32", "int8"):
            m, _ = train.encoder(enc, quant, "all")
            sess = train.session(m)
            cells = []
            for n in LENGTHS:
                ts = []
                for _ in range(150):
                    ids = rng.integers(1000, 30000, (1, n)).astype(np.int64)
                    ids[0, 0], ids[0, -1] = 101, 102
                    t0 = time.perf_counter()
                    sess.run(None, {"input_ids": ids, "attention_mask": np.ones((1, n), np.int64)})
                    ts.append((time.perf_counter() - t0) * 1000)
                ts = np.array(ts[20:])
                cells.append(f"{np.percentile(ts, 50):6.2f} / {np.percentile(ts, 99):6.2f}")
            print(f"{enc} {quant:<8}  " + "  ".join(f"{c:>17}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
