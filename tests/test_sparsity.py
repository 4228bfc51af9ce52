"""Magnitude pruning: the smallest weights become zeros, recovery keeps them, and the file does not
shrink (the measured reason it is offered, not shipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ort_quantization = pytest.importorskip("onnxruntime.quantization")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from models.finetune import FinetuneConfig, finetune  # noqa: E402
from models.sparsity import encoder_matrices, zero_smallest  # noqa: E402
from tests.test_pipeline import INTENTS, subset  # noqa: E402
from tests.test_prune import inputs, make_batches, tiny_model  # noqa: E402
from tests.tiny import save_tiny_bert  # noqa: E402


def test_zero_smallest_zeros_exactly_the_smallest_fraction_of_each_matrix() -> None:
    model = tiny_model()
    before = [linear.weight.detach().clone() for linear in encoder_matrices(model)]
    summary = zero_smallest(model, 0.5)
    assert len(before) == 2 * 6  # q, k, v, attention output, intermediate, output per layer
    for weight, original in zip(
        (linear.weight for linear in encoder_matrices(model)), before, strict=True
    ):
        zeros = weight == 0
        assert int(zeros.sum()) == round(0.5 * original.numel())
        # Every zeroed weight was no larger than every kept one, and the kept ones are untouched.
        assert original[zeros].abs().max() <= original[~zeros].abs().min()
        assert torch.equal(weight[~zeros], original[~zeros])
    assert summary["encoder_weights_zero"] == sum(round(0.5 * w.numel()) for w in before)
    assert summary["encoder_weights"] == sum(w.numel() for w in before)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        zero_smallest(model, 1.0)


def test_recovery_training_keeps_the_zeros_and_moves_the_rest(tmp_path: Path, clinc) -> None:
    torch.manual_seed(0)
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)
    model = AutoModelForSequenceClassification.from_pretrained(base)
    zero_smallest(model, 0.6)
    model.save_pretrained(tmp_path / "sparse")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "sparse")
    config = FinetuneConfig(epochs=1, learning_rate=1e-3, batch_size=32, keep_zeros=True)
    recovered = finetune(tmp_path / "sparse", data, tmp_path / "recovered", config, progress=False)

    after = AutoModelForSequenceClassification.from_pretrained(recovered)
    for start, end in zip(encoder_matrices(model), encoder_matrices(after), strict=True):
        zeros = start.weight == 0
        assert bool((end.weight[zeros] == 0).all())
        assert not torch.equal(end.weight[~zeros], start.weight[~zeros])


def export_int8(model: torch.nn.Module, folder: Path) -> Path:
    folder.mkdir()
    batch = make_batches(n=1)[0]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = folder / "model.onnx"
    torch.onnx.export(
        model,
        tuple(inputs(batch)[name] for name in names),
        str(fp32),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
        opset_version=18,
        dynamo=False,
    )
    int8 = folder / "model.int8.onnx"
    ort_quantization.quantize_dynamic(fp32, int8, weight_type=ort_quantization.QuantType.QInt8)
    return int8


def test_magnitude_pruning_leaves_the_int8_file_as_large(tmp_path: Path) -> None:
    dense = export_int8(tiny_model(), tmp_path / "dense")
    pruned_model = tiny_model()
    zero_smallest(pruned_model, 0.9)
    sparse = export_int8(pruned_model, tmp_path / "sparse")
    assert sparse.stat().st_size == pytest.approx(dense.stat().st_size, rel=0.01)
