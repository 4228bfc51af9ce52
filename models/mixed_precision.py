"""Mixed precision: the fused attention of the layers whose int8 costs the most stays fp32.

Dynamic int8 quantizes each layer's attention projections and their input once per tensor. On one
BANKING77 student that lost 6 test texts in 3,080; one layer's attention kept in fp32 (1.3 MB)
won back 3 of them or all, by the layer; on another the two layers chosen cost it 5 (BENCHMARKS.md,
2026-12-07), so a variant built with it is one to compare, not a sure gain. Which layers matter
is measured without labels: for each fused ``Attention`` node, the graph quantized with only that
node left in fp32 is compared with the fp32 graph on training texts, by the mean KL divergence of
their probabilities. The nodes whose sparing brings the int8 graph closest to fp32 stay fp32.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from app.runtime.classifier import load_classifier
from app.runtime.session import SessionConfig
from models.evaluate import predict_probabilities

ATTENTION_OP = "Attention"


def attention_nodes(model: Path) -> list[str]:
    """The fused attention nodes of a graph, in graph order (one per layer)."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == ATTENTION_OP]


def divergence(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean KL(reference || candidate) over rows of probabilities."""
    eps = 1e-9
    ratio = np.log(reference + eps) - np.log(candidate + eps)
    return float(np.mean(np.sum(reference * ratio, axis=1)))


def rank_attention(
    fused: Path,
    tokenizer: Path,
    texts: Sequence[str],
    max_length: int,
    per_channel: bool,
) -> list[tuple[str, float]]:
    """Every attention node with the divergence from fp32 of the int8 graph that spares only it,
    closest first."""
    from models.export import quantize_int8

    def probabilities(graph: Path) -> np.ndarray:
        session = load_classifier(graph, tokenizer, max_length, SessionConfig())
        # One text at a time, as accuracy is measured: dynamic int8 scales a batch's activations
        # together, so a batch does not see what a lone text's quantization does to it.
        return predict_probabilities(session, list(texts), batch_size=1, progress=False)

    reference = probabilities(fused)
    scores = []
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / "model.onnx"
        for node in attention_nodes(fused):
            quantize_int8(fused, candidate, per_channel=per_channel, keep_fp32=[node])
            scores.append((node, divergence(reference, probabilities(candidate))))
    return sorted(scores, key=lambda score: score[1])


def choose_fp32_attention(
    fused: Path,
    tokenizer: Path,
    texts: Sequence[str],
    max_length: int,
    per_channel: bool,
    count: int,
) -> list[str]:
    """The ``count`` attention nodes to keep in fp32, each node's score printed; all of them,
    with a warning, where the graph has fewer."""
    ranked = rank_attention(fused, tokenizer, texts, max_length, per_channel)
    for node, score in ranked:
        print(f"{node}: KL from fp32 with it spared {score:.6f}", flush=True)
    if len(ranked) < count:
        print(
            f"warning: fp32_attention {count}, but the fused graph has {len(ranked)} attention "
            "layer(s); all of them stay fp32",
            flush=True,
        )
    return [node for node, _ in ranked[:count]]
