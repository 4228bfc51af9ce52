"""Synthetic variants: small ONNX graphs built directly, whose compute is set by ``depth``.

Embedding lookup, ``depth`` dense layers of ``hidden`` units over every token, mean over the
sequence, a classifier. fp32 and no quantization, so a text's logits do not depend on its batch
mates; ``depth`` scales the compute almost linearly. Built in milliseconds, no torch needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app import __version__
from app.core.card import (
    MODEL_FILE,
    TOKENIZER_FILE,
    BaseCheckpoint,
    LineageStep,
    VariantCard,
    file_entry,
    write_card,
)
from tests.tiny import train_wordpiece


def synthetic_model(vocab: int, labels: int, depth: int, hidden: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        scale = 1 / np.sqrt(shape[0])
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    initializers = [weight("embedding", vocab, hidden), weight("classifier", hidden, labels)]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["h0"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
    ]
    initializers.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"))
    for layer in range(depth):
        initializers.append(weight(f"w{layer}", hidden, hidden))
        nodes += [
            helper.make_node("MatMul", [f"h{layer}", f"w{layer}"], [f"m{layer}"]),
            helper.make_node("Tanh", [f"m{layer}"], [f"h{layer + 1}"]),
        ]
    axis = numpy_helper.from_array(np.array([1], dtype=np.int64), "sequence_axis")
    initializers.append(axis)
    nodes += [
        helper.make_node("Mul", [f"h{depth}", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sequence_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "sequence_axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "classifier"], ["logits"]),
    ]
    ints = TensorProto.INT64
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [
            helper.make_tensor_value_info("input_ids", ints, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", ints, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def write_synthetic_variant(
    folder: Path,
    texts: list[str],
    labels: list[str],
    depth: int = 1,
    hidden: int = 64,
    seed: int = 0,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_wordpiece(texts)
    tokenizer.save(str(folder / TOKENIZER_FILE))
    model = synthetic_model(tokenizer.get_vocab_size(), len(labels), depth, hidden, seed)
    onnx.save(model, str(folder / MODEL_FILE))
    card = VariantCard(
        name=folder.name,
        description=f"synthetic: {depth} dense layers of {hidden} units (tests only)",
        labels=labels,
        max_length=64,
        base=BaseCheckpoint(
            reference="synthetic",
            source="tests/synthetic.py",
            weights_file=MODEL_FILE,
            sha256=file_entry(folder / MODEL_FILE).sha256,
        ),
        lineage=[LineageStep(step="synthetic", params={"depth": depth, "hidden": hidden})],
        files={name: file_entry(folder / name) for name in (MODEL_FILE, TOKENIZER_FILE)},
        created_at=datetime.now(UTC),
        brum_version=__version__,
    )
    write_card(folder, card)
    return folder
