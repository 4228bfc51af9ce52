"""Mixed precision: the attention layers kept in fp32 under dynamic int8, chosen without labels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from models.build import write_serving_tokenizer
from models.export import export_onnx, optimize_graph, quantize_int8
from models.finetune import load_for_classification
from models.mixed_precision import attention_nodes, divergence, rank_attention
from models.recipe import Recipe
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def fused(tmp_path_factory, clinc):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("mixed")
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=3)
    model = load_for_classification(base, data.labels)
    model.save_pretrained(root / "classifier")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (root / "classifier" / name).write_bytes((base / name).read_bytes())
    export_onnx(root / "classifier", root / "model.onnx")
    optimize_graph(root / "model.onnx", root / "fused.onnx", root / "classifier" / "config.json")
    tokenizer = write_serving_tokenizer(
        root / "classifier" / "tokenizer.json", root / "tokenizer.json", 32
    )
    return root / "fused.onnx", tokenizer, list(data.splits["train"].texts[:64])


def op_types(model) -> list[str]:
    return [node.op_type for node in onnx.load(str(model)).graph.node]


def test_divergence_is_zero_for_the_same_answers_and_grows_with_the_difference():
    sure = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert divergence(sure, sure) == pytest.approx(0.0, abs=1e-7)
    near, far = np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([[0.5, 0.5], [0.5, 0.5]])
    assert 0 < divergence(sure, near) < divergence(sure, far)


def test_every_attention_layer_is_ranked_and_the_chosen_ones_stay_fp32(fused, tmp_path):
    graph, tokenizer, texts = fused
    layers = attention_nodes(graph)
    assert len(layers) == 3  # fused: one Attention node per layer
    ranked = rank_attention(graph, tokenizer, texts, 32, per_channel=True)
    assert sorted(node for node, _ in ranked) == sorted(layers)
    scores = [score for _, score in ranked]
    assert scores == sorted(scores) and all(np.isfinite(scores)) and min(scores) >= 0

    kept = [ranked[0][0]]
    served = quantize_int8(graph, tmp_path / "mixed.onnx", per_channel=True, keep_fp32=kept)
    assert attention_nodes(served) == kept
    assert op_types(served).count("QAttention") == 2
    everything = quantize_int8(graph, tmp_path / "int8.onnx", per_channel=True)
    assert attention_nodes(everything) == []
    # A layer's projections in fp32: 4 bytes a weight where int8 stores 1.
    assert served.stat().st_size > everything.stat().st_size


def test_fp32_attention_is_refused_outside_dynamic_int8():
    student = {"name": "s", "base": "b", "fp32_attention": 1}
    recipe = {"name": "r", "teacher": {"base": "t"}, "students": [student]}
    assert Recipe.model_validate(recipe).students[0].fp32_attention == 1
    with pytest.raises(ValueError, match="fp32_attention applies to dynamic int8 only"):
        Recipe.model_validate({**recipe, "students": [{**student, "quantization": "static"}]})
