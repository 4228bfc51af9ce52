"""The graph a session runs: SkipLayerNormalization undone into Add + LayerNormalization, with the
same results, on small graphs built here and on the shipped variants."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from app.runtime.classifier import load_classifier
from app.runtime.graph import SKIP_LAYER_NORM, rewritten_graph
from app.runtime.session import SessionConfig
from tests.server import ROOT

HIDDEN = 8
RNG = np.random.default_rng(0)


def _weights(*names: str) -> list[TensorProto]:
    return [
        helper.make_tensor(name, TensorProto.FLOAT, [HIDDEN], RNG.normal(size=HIDDEN).tolist())
        for name in names
    ]


def skip_layer_norm_model(inputs: list[str], outputs: list[str], opset: int) -> onnx.ModelProto:
    """x, skip -> SkipLayerNormalization(inputs) -> y (plus ``sum`` when it is an output), then
    a Relu on y so that the fused node feeds another one."""
    x, skip, total, relu = (
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", HIDDEN])
        for name in ("x", "skip", "sum", "relu")
    )
    node = helper.make_node(
        SKIP_LAYER_NORM, inputs, outputs, name="sln", domain="com.microsoft", epsilon=1e-5
    )
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["y"], ["relu"], name="relu")],
        "skip",
        [x, skip],
        [relu, total] if "sum" in outputs else [relu],
        _weights("gamma", "beta", "bias"),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = 8
    return model


def run(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def op_types(model: bytes) -> list[str]:
    return [node.op_type for node in onnx.load_model_from_string(model).graph.node]


@pytest.mark.parametrize(
    ("inputs", "outputs"),
    [
        (["x", "skip", "gamma", "beta", "bias"], ["y"]),
        (["x", "skip", "gamma", "beta"], ["y"]),
        (["x", "skip", "gamma", "", "bias"], ["y"]),
        (["x", "skip", "gamma"], ["y"]),
        (["x", "skip", "gamma", "beta", "bias"], ["y", "", "", "sum"]),  # the sum read too
    ],
)
@pytest.mark.parametrize("opset", [14, 18])
def test_unfused_graph_computes_what_the_fused_one_does(tmp_path, inputs, outputs, opset):
    path = tmp_path / "model.onnx"
    onnx.save(skip_layer_norm_model(inputs, outputs, opset), path)
    feeds = {name: RNG.normal(size=(3, 5, HIDDEN)).astype(np.float32) for name in ("x", "skip")}
    rewritten = rewritten_graph(path)
    assert rewritten is not None
    assert SKIP_LAYER_NORM not in op_types(rewritten)
    assert "LayerNormalization" in op_types(rewritten)
    for fused, unfused in zip(run(path.read_bytes(), feeds), run(rewritten, feeds), strict=True):
        np.testing.assert_allclose(unfused, fused, rtol=1e-5, atol=1e-5)


def test_a_node_whose_statistics_are_read_stays_fused(tmp_path):
    path = tmp_path / "model.onnx"
    model = skip_layer_norm_model(["x", "skip", "gamma", "beta"], ["y", "mean"], 18)
    model.graph.output.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, None))
    onnx.save(model, path)
    assert rewritten_graph(path) is None


def test_a_graph_without_the_fused_op_is_loaded_as_it_is(tmp_path):
    path = tmp_path / "model.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    assert rewritten_graph(path) is None


def test_the_shipped_variant_served_unfused_answers_as_its_file_does():
    folder = ROOT / "models" / "repository" / "minilm-l6-augmented-int8"
    assert SKIP_LAYER_NORM in op_types((folder / "model.onnx").read_bytes())
    rewritten = rewritten_graph(folder / "model.onnx")
    assert rewritten is not None
    assert SKIP_LAYER_NORM not in op_types(rewritten)
    card = json.loads((folder / "variant.json").read_text())
    served = load_classifier(
        folder / "model.onnx", folder / "tokenizer.json", card["max_length"], SessionConfig(1)
    )
    as_filed = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    clinc = json.loads((ROOT.parent / "shared/data/clinc150/data_full.json").read_text())
    texts = [text for text, _ in clinc["test"][:: len(clinc["test"]) // 300]]
    agree = 0
    for text in texts:
        batch = served.encode([text])
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        feeds["token_type_ids"] = batch.token_type_ids
        expected = as_filed.run(None, {i.name: feeds[i.name] for i in as_filed.get_inputs()})[0]
        agree += int(served.run(batch).argmax() == expected.argmax())
    # int8 rounding moves with the float sums: 4 of CLINC150's 5,500 test answers change.
    assert agree >= len(texts) - 2


def test_unnamed_nodes_unfuse_into_distinct_tensors(tmp_path):
    x, skip, z = (
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3, HIDDEN])
        for name in ("x", "skip", "z")
    )
    chained = [
        helper.make_node(
            SKIP_LAYER_NORM, ["x", "skip", "gamma", "beta", "bias"], ["y"], domain="com.microsoft"
        ),
        helper.make_node(
            SKIP_LAYER_NORM, ["y", "skip", "gamma", "beta", "bias"], ["z"], domain="com.microsoft"
        ),
    ]
    graph = helper.make_graph(chained, "unnamed", [x, skip], [z], _weights("gamma", "beta", "bias"))
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)
    feeds = {name: RNG.normal(size=(2, 3, HIDDEN)).astype(np.float32) for name in ("x", "skip")}
    rewritten = rewritten_graph(path)
    assert rewritten is not None and op_types(rewritten).count("LayerNormalization") == 2
    np.testing.assert_allclose(
        run(rewritten, feeds)[0], run(path.read_bytes(), feeds)[0], atol=1e-5
    )
