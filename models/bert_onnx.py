"""Build a BERT encoder (+ mean pooling + linear head) as one ONNX graph with numpy + onnx only.

No torch: the weights come either from a sentence-transformers `model.safetensors` (all-MiniLM-L6-v2) or
from the initializers of an exported ONNX file (paraphrase-MiniLM-L3-v2), and are re-laid into a graph we
write ourselves, at opset 17:

  inputs   input_ids      int64 [batch, seq]
           attention_mask int64 [batch, seq]   (1 = token, 0 = padding)
  outputs  logits         float [batch, n_labels]        (when a head is given)
           embedding      float [batch, hidden]          (mean-pooled last layer; when no head is given)

token_type_ids are not an input: a single segment always has type 0, so row 0 of the token-type table is
folded into the position table. Position embeddings are a Slice of the table (not Gather(Range)), which
stays correct under every ORT graph optimisation level.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def load_safetensors_bert(path: str) -> dict[str, np.ndarray]:
    """HF BertModel safetensors -> canonical dict (linear weights as [in, out])."""
    from safetensors.numpy import load_file

    raw = load_file(path)
    out = {}
    for k, v in raw.items():
        k = k.removeprefix("bert.")
        if k.endswith("position_ids"):
            continue
        v = v.astype(np.float32)
        if v.ndim == 2 and not k.startswith("embeddings."):
            v = np.ascontiguousarray(v.T)  # torch Linear is [out, in]
        out[k] = v
    return out


def load_onnx_bert(path: str) -> dict[str, np.ndarray]:
    """Exported sentence-transformers BERT ONNX -> canonical dict.

    The exporter names MatMul weights anonymously (`onnx::MatMul_470`); each one is identified by the
    bias that the following Add uses (`...query.bias` -> `...query.weight`).
    """
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = {}
    prefix = "model.0.auto_model."
    for name, arr in inits.items():
        if name.startswith(prefix):
            out[name.removeprefix(prefix)] = arr.astype(np.float32)
    for n in m.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in inits:
            continue
        add = [c for c in consumers.get(n.output[0], []) if c.op_type == "Add"]
        bias = [i for i in add[0].input if i in inits] if add else []
        if not bias:
            raise ValueError(f"cannot name MatMul weight {n.input[1]}")
        out[bias[0].removeprefix(prefix).removesuffix(".bias") + ".weight"] = inits[n.input[1]].astype(np.float32)
    return out


def count_layers(w: dict[str, np.ndarray]) -> int:
    return 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))


class _G:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def c(self, arr, name=None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, **attrs) -> str:
        self.n += 1
        out = f"{op_type.lower()}{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.n}_{op_type}", **attrs))
        return out


def build_model(
    w: dict[str, np.ndarray],
    n_layers: int | None = None,
    head_w: np.ndarray | None = None,
    head_b: np.ndarray | None = None,
    labels: list[str] | None = None,
    n_heads: int = 12,
    eps: float = 1e-12,
    metadata: dict[str, str] | None = None,
    pool_layers: list[int] | None = None,
    bag_w: np.ndarray | None = None,
    pq: tuple[np.ndarray, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """Encoder (first `n_layers` layers) + masked mean pooling (+ `pooled @ head_w + head_b`).

    pool_layers: which hidden states are mean-pooled and concatenated (0 = embedding output, k = output of
    layer k); default: the last layer only.
    bag_w: optional [vocab, n_labels] table: logits += mean over the sequence's tokens of bag_w[token id]
    (a linear model on the bag of WordPiece ids, [CLS] and [SEP] included, masked like the pooling).
    Stored compactly: only the rows that are not all zero (tokens never seen in training get exactly zero
    weights from the L2-regularised fit), reached through a uint16/int32 remap table (row 0 = zeros).
    pq: optional product-quantized word-embedding table (codes uint8 [vocab, m], codebooks float [m, 256, sub]),
    used instead of w["embeddings.word_embeddings.weight"]: row = concat_j codebooks[j, codes[id, j]].
    """
    n_layers = n_layers or count_layers(w)
    pool_layers = pool_layers or [n_layers]
    states = {}
    hidden = w["embeddings.position_embeddings.weight"].shape[1]
    head_dim = hidden // n_heads
    g = _G()

    if pq is not None:
        codes, books = pq
        m, k, sub = books.shape
        code_ids = g.op("Cast", [g.op("Gather", [g.c(codes.astype(np.uint8), "pq_codes"), "input_ids"])], to=TensorProto.INT64)
        flat = g.op("Add", [code_ids, g.c((np.arange(m, dtype=np.int64) * k), "pq_offsets")])  # [B,S,m]
        parts = g.op("Gather", [g.c(books.reshape(m * k, sub).astype(np.float32), "pq_codebooks"), flat])  # [B,S,m,sub]
        word_rows = g.op("Reshape", [parts, g.c(np.array([0, 0, m * sub], np.int64))])
    else:
        word = g.c(w["embeddings.word_embeddings.weight"], "word_embeddings")
        word_rows = g.op("Gather", [word, "input_ids"])
    pos_tab = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    pos = g.c(pos_tab.astype(np.float32), "position_plus_type0")

    ids_shape = g.op("Shape", ["input_ids"])
    seq = g.op("Slice", [ids_shape, g.c(np.array([1], np.int64)), g.c(np.array([2], np.int64))])
    pos_slice = g.op("Slice", [pos, g.c(np.array([0], np.int64)), seq, g.c(np.array([0], np.int64))])
    x = g.op("Add", [word_rows, pos_slice])

    def ln(inp, prefix):
        return g.op("LayerNormalization", [inp, g.c(w[prefix + ".weight"]), g.c(w[prefix + ".bias"])],
                    axis=-1, epsilon=eps)

    def linear(inp, prefix):
        return g.op("Add", [g.op("MatMul", [inp, g.c(w[prefix + ".weight"], prefix + ".weight")]),
                            g.c(w[prefix + ".bias"])])

    x = ln(x, "embeddings.LayerNorm")
    states[0] = x

    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B,S]
    # additive attention bias [B,1,1,S]: 0 for tokens, -10000 for padding
    neg = g.op("Mul", [g.op("Sub", [g.c(np.array(1.0, np.float32)), mask_f]), g.c(np.array(-10000.0, np.float32))])
    att_bias = g.op("Unsqueeze", [neg, g.c(np.array([1, 2], np.int64))])

    split_shape = g.c(np.array([0, 0, n_heads, head_dim], np.int64))
    merge_shape = g.c(np.array([0, 0, hidden], np.int64))
    scale = g.c(np.array(1.0 / np.sqrt(head_dim), np.float32))
    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.query"), split_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.key"), split_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.value"), split_shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), att_bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_shape])
        x = ln(g.op("Add", [linear(ctx, p + ".attention.output.dense"), x]), p + ".attention.output.LayerNorm")
        h = linear(x, p + ".intermediate.dense")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        gelu = g.op("Mul", [g.op("Mul", [h, g.c(np.array(0.5, np.float32))]),
                            g.op("Add", [g.op("Erf", [g.op("Div", [h, g.c(np.array(np.sqrt(2.0), np.float32))])]),
                                         g.c(np.array(1.0, np.float32))])])
        x = ln(g.op("Add", [linear(gelu, p + ".output.dense"), x]), p + ".output.LayerNorm")
        states[i + 1] = x

    # masked mean pooling
    m3 = g.op("Unsqueeze", [mask_f, g.c(np.array([2], np.int64))])  # [B,S,1]
    count = g.op("Max", [g.op("ReduceSum", [m3, g.c(np.array([1], np.int64))], keepdims=0),
                         g.c(np.array([1e-9], np.float32))])  # [B,1]
    pools = []
    for k in pool_layers:
        summed = g.op("ReduceSum", [g.op("Mul", [states[k], m3]), g.c(np.array([1], np.int64))], keepdims=0)  # [B,H]
        pools.append(g.op("Div", [summed, count]))
    pooled = pools[0] if len(pools) == 1 else g.op("Concat", pools, axis=1)
    hidden_out = hidden * len(pools)

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])]
    if head_w is not None:
        logits = g.op("Add", [g.op("MatMul", [pooled, g.c(head_w.astype(np.float32), "head.weight")]),
                              g.c(head_b.astype(np.float32), "head.bias")])
        if bag_w is not None:
            used = np.where(np.abs(bag_w).sum(1) > 0)[0]
            compact = np.zeros((len(used) + 1, bag_w.shape[1]), np.float32)
            compact[1:] = bag_w[used]
            remap = np.zeros(bag_w.shape[0], np.uint16 if len(used) < 65535 else np.int32)
            remap[used] = np.arange(1, len(used) + 1)
            rows = g.op("Cast", [g.op("Gather", [g.c(remap, "bag_remap"), "input_ids"])], to=TensorProto.INT64)
            g.nodes.append(helper.make_node("Gather", [g.c(compact, "bag.weight"), rows],
                                            ["bag_tokens"], name="bag_gather"))
            bag_sum = g.op("ReduceSum", [g.op("Mul", ["bag_tokens", m3]), g.c(np.array([1], np.int64))], keepdims=0)
            logits = g.op("Add", [logits, g.op("Div", [bag_sum, count])])
        g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits_out"))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", head_w.shape[1]])]
    else:
        g.nodes.append(helper.make_node("Identity", [pooled], ["embedding"], name="embedding_out"))
        outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden_out])]

    graph = helper.make_graph(g.nodes, "signalbox_classifier", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="signalbox-models")
    model.ir_version = 8
    meta = dict(metadata or {})
    if labels:
        meta["labels"] = ",".join(labels)
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.checker.check_model(model)
    return model
