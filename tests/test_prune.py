"""Structured pruning on a tiny random BERT: matrices really shrink, outputs survive round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from models.prune import (  # noqa: E402
    count_parameters,
    head_importance,
    neuron_importance,
    prune_heads,
    prune_model,
    prune_neurons,
    select_heads,
    taylor_importance,
)

HIDDEN, LAYERS, HEADS, INTERMEDIATE, LABELS, VOCAB = 32, 2, 4, 64, 5, 100
HEAD_SIZE = HIDDEN // HEADS


@pytest.fixture(autouse=True)
def _light_cpu() -> None:
    torch.set_num_threads(1)


def tiny_model(
    config_class: type = BertConfig, model_class: type = BertForSequenceClassification
) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = config_class(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        num_labels=LABELS,
        max_position_embeddings=64,
    )
    return model_class(config).eval()


def make_batches(n: int = 3, size: int = 4, length: int = 12) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        attention_mask = torch.ones(size, length, dtype=torch.long)
        attention_mask[0, length // 2 :] = 0  # some padding, so the mask path is exercised
        batches.append(
            {
                "input_ids": torch.randint(5, VOCAB, (size, length), generator=generator),
                "attention_mask": attention_mask,
                "token_type_ids": torch.zeros(size, length, dtype=torch.long),
                "labels": torch.randint(0, LABELS, (size,), generator=generator),
            }
        )
    return batches


def inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


@torch.no_grad()
def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs(batch)).logits


@torch.no_grad()
def hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The encoder output: after LayerNorm it is of order 1, whereas a random classifier's
    logits are of order 0.01, too small to show a change reliably."""
    return model.base_model(**inputs(batch)).last_hidden_state


def attention(model: BertForSequenceClassification, layer: int) -> torch.nn.Module:
    return model.base_model.encoder.layer[layer].attention


def test_importance_shapes_nonnegative_and_informative() -> None:
    model = tiny_model()
    batches = make_batches()
    heads, neurons = taylor_importance(model, batches)
    assert heads.shape == (LAYERS, HEADS)
    assert neurons.shape == (LAYERS, INTERMEDIATE)
    for scores in (heads, neurons):
        assert torch.isfinite(scores).all()
        assert (scores >= 0).all()
        assert scores.max() > 0
        assert scores.unique().numel() > 1
    # The model is left ready to serve: eval mode, no stale gradients.
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    # The single-score helpers agree with the shared pass.
    torch.testing.assert_close(head_importance(model, batches), heads)
    torch.testing.assert_close(neuron_importance(model, batches), neurons)


def test_neuron_importance_matches_hand_computed_taylor_score() -> None:
    model = tiny_model()
    batch = make_batches(n=1)[0]
    neurons = neuron_importance(model, [batch])
    model(**batch).loss.backward()
    layer = model.base_model.encoder.layer[1]
    w_in, w_out = layer.intermediate.dense, layer.output.dense
    i = 7
    expected = (
        (w_in.weight.grad[i] * w_in.weight[i]).sum()
        + w_in.bias.grad[i] * w_in.bias[i]
        + (w_out.weight.grad[:, i] * w_out.weight[:, i]).sum()
    ).abs()
    torch.testing.assert_close(neurons[1, i], expected.detach(), rtol=1e-4, atol=1e-9)


def test_zeroed_neuron_and_head_score_exactly_zero() -> None:
    """A neuron whose input row, bias and output column are all zero contributes nothing, so
    its Taylor score must be exactly zero; a sanity check that the right slices are used."""
    model = tiny_model()
    layer = model.base_model.encoder.layer[0]
    with torch.no_grad():
        layer.intermediate.dense.weight[3].zero_()
        layer.intermediate.dense.bias[3] = 0.0
        layer.output.dense.weight[:, 3].zero_()
        q = attention(model, 0).self.query
        k = attention(model, 0).self.key
        v = attention(model, 0).self.value
        o = attention(model, 0).output.dense
        span = slice(2 * HEAD_SIZE, 3 * HEAD_SIZE)
        for linear in (q, k, v):
            linear.weight[span].zero_()
            linear.bias[span].zero_()
        o.weight[:, span].zero_()
    heads, neurons = taylor_importance(model, make_batches())
    assert neurons[0, 3] == 0
    assert (neurons[0, :3] > 0).all()
    assert heads[0, 2] == 0
    assert (heads[0, [0, 1, 3]] > 0).all()


def test_prune_heads_removes_exactly_the_requested_heads() -> None:
    model = tiny_model()
    batch = make_batches(n=1)[0]
    original_query = attention(model, 0).self.query.weight.detach().clone()
    prune_heads(model, {0: [1, 3], 1: [2]})

    assert attention(model, 0).self.query.weight.shape == ((HEADS - 2) * HEAD_SIZE, HIDDEN)
    assert attention(model, 1).self.query.weight.shape == ((HEADS - 1) * HEAD_SIZE, HIDDEN)
    for layer, removed in ((0, 2), (1, 1)):
        att = attention(model, layer)
        kept_width = (HEADS - removed) * HEAD_SIZE
        assert att.self.key.weight.shape[0] == kept_width
        assert att.self.value.weight.shape[0] == kept_width
        assert att.output.dense.weight.shape == (HIDDEN, kept_width)
        assert att.self.num_attention_heads == HEADS - removed
    assert model.config.pruned_heads == {0: [1, 3], 1: [2]}
    # The surviving heads 0 and 2 are the original rows, in order.
    kept_rows = torch.cat([original_query[0:HEAD_SIZE], original_query[16:24]])
    assert torch.equal(attention(model, 0).self.query.weight, kept_rows)
    assert logits(model, batch).shape == (batch["input_ids"].shape[0], LABELS)


def test_prune_heads_uses_original_indices_across_rounds() -> None:
    """transformers numbers heads as in the unpruned model even after a first round; scores from a
    pruned model must use the same numbering, or the second round removes the wrong heads."""
    model = tiny_model()
    original_query = attention(model, 0).self.query.weight.detach().clone()
    prune_heads(model, {0: [0]})
    heads = head_importance(model, make_batches())
    assert torch.isnan(heads[0, 0])
    assert not torch.isnan(heads[0, 1:]).any()
    assert 0 not in select_heads(heads, 0.99).get(0, [])
    prune_heads(model, {0: [2]})  # original head 2, stored third before round one
    assert model.config.pruned_heads[0] == [0, 2]
    expected = torch.cat([original_query[8:16], original_query[24:32]])
    assert torch.equal(attention(model, 0).self.query.weight, expected)


def test_prune_heads_refuses_to_empty_a_layer() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="every head"):
        prune_heads(model, {1: [0, 1, 2, 3]})
    prune_heads(model, {1: [0, 1]})
    with pytest.raises(ValueError, match="every head"):
        prune_heads(model, {1: [2, 3]})
    with pytest.raises(ValueError, match="out of range"):
        prune_heads(model, {0: [HEADS]})
    assert attention(model, 1).self.num_attention_heads == 2


def test_select_heads_global_and_keeps_one_head_per_layer() -> None:
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4], [5.0, 6.0, 7.0, 8.0]])
    # The lowest quarter of all 8 heads is both from layer 0.
    assert select_heads(scores, 0.25) == {0: [0, 1]}
    # Asking for more than layer 0 can give spills into layer 1 and leaves layer 0 its best head.
    assert select_heads(scores, 0.5) == {0: [0, 1, 2], 1: [0]}
    assert select_heads(scores, 0.0) == {}
    nearly_all = select_heads(scores, 0.99)
    assert all(len(heads) == HEADS - 1 for heads in nearly_all.values())


def test_prune_neurons_keeps_most_important_rows_bit_exact() -> None:
    model = tiny_model()
    scores = torch.rand(LAYERS, INTERMEDIATE, generator=torch.Generator().manual_seed(2))
    keep = 24
    before = [
        (
            layer.intermediate.dense.weight.detach().clone(),
            layer.intermediate.dense.bias.detach().clone(),
            layer.output.dense.weight.detach().clone(),
            layer.output.dense.bias.detach().clone(),
        )
        for layer in model.base_model.encoder.layer
    ]
    prune_neurons(model, keep, scores)

    assert model.config.intermediate_size == keep
    for i, layer in enumerate(model.base_model.encoder.layer):
        w_in, b_in, w_out, b_out = before[i]
        top = set(torch.topk(scores[i], keep).indices.tolist())
        index = torch.tensor(sorted(top))
        assert layer.intermediate.dense.weight.shape == (keep, HIDDEN)
        assert layer.output.dense.weight.shape == (HIDDEN, keep)
        assert torch.equal(layer.intermediate.dense.weight, w_in[index])
        assert torch.equal(layer.intermediate.dense.bias, b_in[index])
        assert torch.equal(layer.output.dense.weight, w_out[:, index])
        assert torch.equal(layer.output.dense.bias, b_out)
        # Every dropped neuron scored no higher than every kept one.
        dropped = [j for j in range(INTERMEDIATE) if j not in top]
        assert scores[i, dropped].max() <= scores[i, index].min()


def test_pruning_neurons_with_zero_output_does_not_change_outputs() -> None:
    model = tiny_model()
    batch = make_batches(n=1)[0]
    dead = [0, 5, 17, 40, 63]
    with torch.no_grad():
        for layer in model.base_model.encoder.layer:
            layer.output.dense.weight[:, dead] = 0.0
    expected, expected_hidden = logits(model, batch), hidden(model, batch)
    scores = torch.ones(LAYERS, INTERMEDIATE)
    scores[:, dead] = 0.0
    prune_neurons(model, INTERMEDIATE - len(dead), scores)
    assert model.base_model.encoder.layer[0].intermediate.dense.out_features == 59
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(hidden(model, batch), expected_hidden, rtol=0, atol=1e-6)


def test_pruning_live_neurons_does_change_outputs() -> None:
    """Guards the test above: without zeroed columns, dropping neurons must move the logits."""
    model = tiny_model()
    batch = make_batches(n=1)[0]
    expected = hidden(model, batch)
    prune_neurons(model, INTERMEDIATE - 5, torch.arange(INTERMEDIATE).float().repeat(LAYERS, 1))
    assert (hidden(model, batch) - expected).abs().max() > 1e-3


def test_prune_model_summary_and_parameter_count() -> None:
    model = tiny_model()
    batches = make_batches()
    total = count_parameters(model)
    summary = prune_model(model, iter(batches), head_fraction=0.25, neuron_fraction=0.5)

    assert json.loads(json.dumps(summary)) == summary  # JSON-safe, keys already strings
    assert summary["parameters_before"] == total
    assert summary["parameters_after"] == count_parameters(model)
    removed = sum(len(h) for h in summary["heads_removed"].values())
    assert removed == 2
    assert summary["heads_before"] == LAYERS * HEADS
    assert summary["heads_after"] == LAYERS * HEADS - removed
    assert summary["intermediate_size_before"] == INTERMEDIATE
    assert summary["intermediate_size_after"] == INTERMEDIATE // 2 == model.config.intermediate_size
    # Each removed head takes 3 * (rows + bias) + output columns; each neuron a row, bias, column.
    per_head = 3 * HEAD_SIZE * (HIDDEN + 1) + HIDDEN * HEAD_SIZE
    per_neuron = HIDDEN + 1 + HIDDEN
    expected_drop = removed * per_head + LAYERS * (INTERMEDIATE // 2) * per_neuron
    assert summary["parameters_before"] - summary["parameters_after"] == expected_drop
    assert {int(k): v for k, v in summary["heads_removed"].items()} == model.config.pruned_heads
    assert not model.training


def pruned_model() -> BertForSequenceClassification:
    model = tiny_model()
    prune_model(model, make_batches(), head_fraction=0.375, neuron_fraction=0.25)
    return model


def test_pruned_model_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    model = pruned_model()
    batch = make_batches(n=1)[0]
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()

    assert loaded.config.intermediate_size == model.config.intermediate_size
    assert loaded.config.pruned_heads == model.config.pruned_heads
    assert count_parameters(loaded) == count_parameters(model)
    for ours, theirs in zip(
        model.base_model.encoder.layer, loaded.base_model.encoder.layer, strict=True
    ):
        assert theirs.attention.self.query.weight.shape == ours.attention.self.query.weight.shape
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), rtol=0, atol=0)


def test_pruned_model_runs_in_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = pruned_model()
    batch = make_batches(n=1, size=3, length=10)[0]
    path = tmp_path / "model.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        model,
        tuple(batch[name] for name in names),
        str(path),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
        opset_version=18,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # A different batch and sequence length from the trace, so the dynamic axes are exercised.
    other = make_batches(n=1, size=5, length=7)[0]
    for sample in (batch, other):
        feeds = {name: sample[name].numpy() for name in names}
        (got,) = session.run(["logits"], feeds)
        expected = logits(model, sample).numpy()
        assert got.shape == expected.shape == (sample["input_ids"].shape[0], LABELS)
        assert abs(got - expected).max() < 1e-4


def tiny_mpnet() -> torch.nn.Module:
    return tiny_model(transformers.MPNetConfig, transformers.MPNetForSequenceClassification)


def mpnet_batches() -> list[dict[str, torch.Tensor]]:
    return [{k: v for k, v in batch.items() if k != "token_type_ids"} for batch in make_batches()]


def test_mpnet_prunes_neurons_and_round_trips(tmp_path: Path) -> None:
    """MPNet (the teacher's architecture) loses feed-forward neurons like BERT does."""
    model = tiny_mpnet()
    summary = prune_model(model, iter(mpnet_batches()), head_fraction=0.0, neuron_fraction=0.5)
    assert summary["heads_removed"] == {}
    assert summary["heads_before"] == summary["heads_after"] == LAYERS * HEADS
    assert summary["intermediate_size_after"] == INTERMEDIATE // 2
    assert summary["parameters_before"] - summary["parameters_after"] == (
        LAYERS * (INTERMEDIATE // 2) * (HIDDEN + 1 + HIDDEN)
    )
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = mpnet_batches()[0]
    assert loaded.base_model.encoder.layer[0].intermediate.dense.out_features == INTERMEDIATE // 2
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), rtol=0, atol=0)


def test_mpnet_head_pruning_is_refused_before_scoring() -> None:
    """Every MPNet layer adds a position bias shaped for all heads: a layer with fewer heads
    fails on shapes, so head pruning must be refused with a reason, not crash mid-way."""
    model = tiny_mpnet()
    scored = []

    def counting_batches():
        for batch in mpnet_batches():
            scored.append(batch)
            yield batch

    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="cannot prune attention heads of a 'mpnet' model"):
        prune_model(model, counting_batches(), head_fraction=0.25, neuron_fraction=0.5)
    assert scored == []
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
