"""ONNX export with optimum, onnxruntime graph fusion, and dynamic int8 quantization."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from optimum.exporters.onnx import main_export
from transformers import AutoConfig

from models.pooling import load_classifier, pooling_of

DEFAULT_OPSET = 18
# Model families whose attention onnxruntime's transformer optimizer knows how to fuse.
FUSABLE_MODEL_TYPES = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "mpnet": "bert"}


def export_onnx(model_dir: Path, output: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export a sequence-classification checkpoint to ``output`` (a .onnx file) with optimum.

    optimum checks the exported outputs against the PyTorch model and fails if they differ.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    if pooling_of(model_dir) == "mean":
        return _export_mean_pooled(model_dir, output, opset)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        main_export(
            str(model_dir),
            scratch,
            task="text-classification",
            opset=opset,
            library_name="transformers",
            do_validation=True,
        )
        shutil.move(Path(scratch) / "model.onnx", output)
    return output


def _export_mean_pooled(model_dir: Path, output: Path, opset: int) -> Path:
    """optimum's text-classification export of the encoder's family, given the model itself:
    ``main_export`` would rebuild the family's own ``[CLS]`` head from the checkpoint."""
    from optimum.exporters.onnx.convert import export, validate_model_outputs
    from optimum.exporters.tasks import TasksManager

    model = load_classifier(model_dir).eval()
    onnx_config = TasksManager.get_exporter_config_constructor(
        "onnx",
        model_type=model.config.model_type,
        task="text-classification",
        library_name="transformers",
    )(model.config)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        exported = Path(scratch) / "model.onnx"
        _, outputs = export(model, onnx_config, exported, opset=opset)
        validate_model_outputs(
            onnx_config,
            model,
            exported,
            outputs,
            atol=onnx_config.ATOL_FOR_VALIDATION,
            use_subprocess=False,
        )
        shutil.move(exported, output)
    return output


def optimize_graph(model: Path, output: Path, config_path: Path) -> Path:
    """Fuse attention, layer norm and GELU with onnxruntime's transformer optimizer."""
    config = json.loads(config_path.read_text())
    model_type = FUSABLE_MODEL_TYPES.get(config["model_type"])
    if model_type is None:
        shutil.copyfile(model, output)
        return output
    # AutoConfig reads each family's own names for these (DistilBERT's n_heads and dim).
    standard = AutoConfig.from_pretrained(config_path.parent)
    # Pruned heads leave layers with different head counts: let the optimizer read them per node.
    pruned = any(config.get("pruned_heads") or {})
    optimized = optimize_model(
        str(model),
        model_type=model_type,
        num_heads=0 if pruned else standard.num_attention_heads,
        hidden_size=0 if pruned else standard.hidden_size,
        opt_level=1,
    )
    optimized.save_model_to_file(str(output))
    return output


class _WithoutPreProcessingAdvice(logging.Filter):
    """The quantizer advises its pre-processing (shape inference, its own optimizer pass) on every
    graph that lacks its metadata, through the root logger. brum quantizes graphs its own
    optimizer stage fused and checks int8 against fp32 after, so the advice is noise to a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root, advice = logging.getLogger(), _WithoutPreProcessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_int8(
    model: Path, output: Path, per_channel: bool = False, keep_fp32: Sequence[str] = ()
) -> Path:
    """Dynamic int8: weights stored as int8, activations quantized on the fly per batch; the
    nodes named in ``keep_fp32`` stay as they are."""
    with _quiet_quantizer():
        quantize_dynamic(
            model,
            output,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=list(keep_fp32),
            # Needed on graphs fused by the transformer optimizer, whose outputs lack type info.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return output


def count_initializer_elements(model: Path) -> int:
    graph = onnx.load(str(model), load_external_data=False).graph
    return sum(_numel(tensor) for tensor in graph.initializer)


def int8_weight_fraction(model: Path) -> float:
    """Share of the model's initializer elements stored as 8-bit integers."""
    graph = onnx.load(str(model)).graph
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    sizes = {t.name: (t.data_type, _numel(t)) for t in graph.initializer}
    total = sum(n for _, n in sizes.values())
    return sum(n for dtype, n in sizes.values() if dtype in int8) / total if total else 0.0


def _numel(tensor: onnx.TensorProto) -> int:
    size = 1
    for dim in tensor.dims:
        size *= dim
    return size


class _TextCalibration:
    """Feeds tokenized training texts to onnxruntime's static-quantization calibrator."""

    def __init__(self, tokenizer_path: Path, texts: list[str], max_length: int, input_names):
        from app.runtime.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path, max_length)
        self._batches = iter(
            [tokenizer.encode_batch(texts[i : i + 16]) for i in range(0, len(texts), 16)]
        )
        self._input_names = input_names

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return {name: feeds[name] for name in self._input_names}


STATIC_OP_TYPES = ["MatMul", "Gemm", "Gather"]


def quantize_static_int8(
    model: Path,
    output: Path,
    tokenizer_path: Path,
    texts: list[str],
    max_length: int,
    per_channel: bool = False,
) -> Path:
    """Static int8 (QDQ): activation ranges calibrated once on ``texts`` instead of per batch,
    so an answer never depends on the other texts in its batch. Gather is quantized too so the
    embedding tables are stored as int8, as dynamic quantization stores them."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    graph = onnx.load(str(model), load_external_data=False).graph
    input_names = [i.name for i in graph.input]
    with _quiet_quantizer():
        quantize_static(
            model,
            output,
            _TextCalibration(tokenizer_path, texts, max_length, input_names),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=STATIC_OP_TYPES,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return output
