"""Build one variant: resolve, fine-tune, export, fuse, quantize, evaluate, write the card.

Every stage writes its output under ``workdir`` and is skipped when that output already exists, so a
killed build picks up where it stopped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from app import __version__
from app.core.card import (
    MODEL_FILE,
    TOKENIZER_FILE,
    BaseCheckpoint,
    LineageStep,
    OfflineMetrics,
    OosThreshold,
    VariantCard,
    file_entry,
    write_card,
)
from app.runtime.classifier import OnnxClassifier, load_classifier
from app.runtime.session import SessionConfig
from models.checkpoints import ResolvedCheckpoint, resolve
from models.data import TextClassificationData
from models.evaluate import (
    latency_batch1,
    predict_labels,
    predict_probabilities,
    round_metric,
    served_accuracy,
    throughput,
)
from models.model_card import write_model_card
from models.oos import ThresholdChoice, tune_threshold
from models.stamps import made_from, weights_digest

LICENSE_FILES = ("LICENSE", "NOTICE")


@dataclass(frozen=True)
class PackageConfig:
    """How a trained model becomes a served variant."""

    opset: int = 18
    quantization: str = "dynamic"  # dynamic | static | none
    per_channel: bool = False
    calibration_texts: int = 1024
    # Layers whose fused attention stays fp32 under dynamic int8 (models/mixed_precision.py),
    # chosen on ``calibration_texts`` training texts.
    fp32_attention: int = 0
    latency_samples: int = 1000
    benchmark_threads: int = 1
    # Tune an out-of-scope threshold on the validation split (None: answer the argmax).
    oos_objective: str | None = "balanced"
    oos_share: float | None = None  # for the expected_accuracy objective


@dataclass(frozen=True)
class BuildConfig(PackageConfig):
    name: str = ""
    base: str = ""
    finetune: dict = field(default_factory=dict)


def stage(label: str) -> None:
    print(f"==> {label}", flush=True)


def build_variant(
    config: BuildConfig, data: TextClassificationData, workdir: Path, repository: Path
) -> Path:
    """Fine-tune ``config.base`` on ``data`` and package it as the variant ``config.name``."""
    from models.finetune import FinetuneConfig, finetune

    workdir.mkdir(parents=True, exist_ok=True)
    stage(f"resolve {config.base}")
    base = resolve(config.base)
    finetune_config = FinetuneConfig(**config.finetune)
    stage("fine-tune")
    trained = finetune(base.path, data, workdir / "finetune", finetune_config)
    lineage = [finetune_step("finetune", finetune_config, data, trained)]
    return package_variant(config.name, trained, base, lineage, data, workdir, repository, config)


def finetune_step(
    step: str, config: object, data: TextClassificationData, trained: Path, **extra
) -> LineageStep:
    record = _finetune_record(trained)
    params = {**asdict(config), "dataset": data.name, **extra, "history": record.get("history", [])}
    if "bf16" in record.get("config", {}):  # what the run used, where the config says "auto"
        params["bf16"] = record["config"]["bf16"]
    if record.get("pooling", "cls") != "cls":  # cards of [CLS] students stay as they were
        params["pooling"] = record["pooling"]
    if params.get("alpha") == 1.0:
        params.pop("temperature", None)
        params.pop("alpha", None)
    if params.get("max_steps") is None:
        params.pop("max_steps", None)
    if not params.get("keep_zeros"):
        params.pop("keep_zeros", None)
    if not params.get("keep_best"):
        params.pop("keep_best", None)
    elif "kept_epoch" in record:
        params["kept_epoch"] = record["kept_epoch"]
    return LineageStep(step=step, params=params)


def package_variant(
    name: str,
    trained: Path,
    base: ResolvedCheckpoint,
    lineage: list[LineageStep],
    data: TextClassificationData,
    workdir: Path,
    repository: Path,
    config: PackageConfig,
) -> Path:
    """Export, fuse, quantize, check, tune the oos threshold, evaluate, and write the variant."""
    from models.export import count_initializer_elements

    graphs = build_graphs(trained, data, workdir, config)
    stage("check the served graph against the fp32 export on the validation split")
    one_thread = SessionConfig(intra_op_threads=config.benchmark_threads)
    reference = load_classifier(graphs.fp32, graphs.tokenizer, graphs.max_length, one_thread)
    classifier = load_classifier(graphs.served, graphs.tokenizer, graphs.max_length, one_thread)
    validation = data.splits["validation"]
    # One text at a time, as the headline accuracy is measured (models.evaluate.ServedAccuracy).
    probabilities = predict_probabilities(classifier, validation.texts, batch_size=1)
    agreement = float(
        (predict_labels(reference, validation.texts, 1) == probabilities.argmax(axis=1)).mean()
    )
    print(f"argmax agreement with the fp32 export on validation: {agreement:.4f}", flush=True)
    tuning = tune_oos(probabilities, data, config)
    rejection = None if tuning is None else oos_threshold(tuning, data)

    stage("evaluate on the test split")
    elements = count_initializer_elements(graphs.fp32)
    metrics = measure(classifier, graphs.served, data, elements, config, rejection)
    print(json.dumps(metrics.model_dump(), indent=2), flush=True)
    return write_variant(
        name,
        base,
        [*lineage, *packaging_lineage(config, graphs, agreement, tuning)],
        metrics,
        data,
        graphs.max_length,
        {MODEL_FILE: graphs.served, TOKENIZER_FILE: graphs.tokenizer},
        repository,
        rejection,
    )


@dataclass(frozen=True)
class Graphs:
    fp32: Path  # the exported graph
    fused: Path | None  # the fused graph (None: static quantization works on the unfused one)
    served: Path  # what the variant serves
    tokenizer: Path  # the serving tokenizer
    max_length: int


def build_graphs(
    trained: Path, data: TextClassificationData, workdir: Path, config: PackageConfig
) -> Graphs:
    """The ONNX export, its fused graph and the quantized graph served, each made once."""
    from models.export import export_onnx, optimize_graph, quantize_int8, quantize_static_int8
    from models.mixed_precision import choose_fp32_attention

    weights = weights_digest(trained)
    fp32 = workdir / "onnx" / "model.onnx"
    made_from(fp32.parent, {"weights": weights, "opset": config.opset})
    if not fp32.is_file():
        stage("export to ONNX (optimum)")
        export_onnx(trained, fp32, config.opset)
    if config.quantization not in {"dynamic", "static", "none"}:
        raise ValueError(f"unknown quantization {config.quantization!r}")
    # Static QDQ quantizes the unfused graph: the fused Attention op has no QDQ form.
    fused = None if config.quantization == "static" else workdir / "onnx" / "model.fused.onnx"
    if fused is not None and not fused.is_file():
        stage("fuse graph (onnxruntime transformer optimizer)")
        optimize_graph(fp32, fused, trained / "config.json")
    max_length = json.loads((trained / "finetune.json").read_text())["config"]["max_length"]
    tokenizer = workdir / "serving" / TOKENIZER_FILE
    pad_token_id = json.loads((trained / "config.json").read_text()).get("pad_token_id")
    write_serving_tokenizer(trained / TOKENIZER_FILE, tokenizer, max_length, pad_token_id)

    if config.quantization == "none":
        assert fused is not None
        return Graphs(fp32, fused, fused, tokenizer, max_length)
    served = workdir / f"int8-{config.quantization}" / MODEL_FILE
    static = config.quantization == "static"
    made_from(
        served.parent,
        {
            "weights": weights,
            "opset": config.opset,
            "per_channel": config.per_channel,
            "calibration_texts": config.calibration_texts if static else None,
        }
        # Stamped only when asked for, so the graphs built before it stay valid.
        | ({"fp32_attention": config.fp32_attention} if config.fp32_attention else {}),
    )
    if not served.is_file():
        stage(f"quantize {config.quantization} int8")
        served.parent.mkdir(parents=True, exist_ok=True)
        if fused is not None:
            keep: list[str] = []
            if config.fp32_attention:
                stage(f"choose the {config.fp32_attention} attention layer(s) to keep in fp32")
                texts = calibration_texts(data, config.calibration_texts)
                keep = choose_fp32_attention(
                    fused, tokenizer, texts, max_length, config.per_channel, config.fp32_attention
                )
            quantize_int8(fused, served, per_channel=config.per_channel, keep_fp32=keep)
        else:
            texts = calibration_texts(data, config.calibration_texts)
            quantize_static_int8(
                fp32, served, tokenizer, texts, max_length, per_channel=config.per_channel
            )
    return Graphs(fp32, fused, served, tokenizer, max_length)


def calibration_texts(data: TextClassificationData, count: int) -> list[str]:
    """A seeded random draw of training texts: the split is ordered by intent, so its head
    covers a dozen intents."""
    train = data.splits["train"].texts
    return [train[i] for i in np.random.default_rng(0).permutation(len(train))[:count]]


def tune_oos(
    probabilities: np.ndarray, data: TextClassificationData, config: PackageConfig
) -> ThresholdChoice | None:
    """The out-of-scope threshold on the validation split, where the data has such a label."""
    if config.oos_objective is None or data.oos_id is None:
        return None
    stage(f"tune the out-of-scope threshold on the validation split ({config.oos_objective})")
    tuning = tune_threshold(
        probabilities,
        np.asarray(data.splits["validation"].label_ids),
        data.oos_id,
        config.oos_objective,
        config.oos_share,
    )
    print(json.dumps(asdict(tuning)), flush=True)
    return tuning


def oos_threshold(tuning: ThresholdChoice, data: TextClassificationData) -> OosThreshold:
    assert data.oos_id is not None
    return OosThreshold(
        label=data.labels[data.oos_id],
        threshold=round(tuning.threshold, 6),
        objective=tuning.objective,
        oos_share=tuning.oos_share,
        split="validation",
    )


def packaging_lineage(
    config: PackageConfig, graphs: Graphs, agreement: float, tuning: ThresholdChoice | None
) -> list[LineageStep]:
    """The card's lineage steps after training: export, fusion, quantization, threshold."""
    from models.export import STATIC_OP_TYPES
    from models.mixed_precision import attention_nodes

    steps = [LineageStep(step="export_onnx", params={"exporter": "optimum", "opset": config.opset})]
    if graphs.fused is not None:
        steps.append(
            LineageStep(
                step="optimize_graph",
                params={"tool": "onnxruntime.transformers.optimizer", "opt_level": 1},
            )
        )
    if config.quantization != "none":
        params = {
            "weight_type": "int8",
            "per_channel": config.per_channel,
            "fp32_argmax_agreement": round(agreement, 4),
        }
        if config.fp32_attention:
            params.update(
                fp32_attention=attention_nodes(graphs.served),
                fp32_attention_chosen_by="KL from fp32 on training texts, each node spared alone",
            )
        if config.quantization == "static":
            params.update(
                format="QDQ",
                calibration="minmax, random training texts",
                calibration_texts=config.calibration_texts,
                op_types=STATIC_OP_TYPES,
            )
        steps.append(LineageStep(step=f"quantize_{config.quantization}", params=params))
    if tuning is not None:
        rounded = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(tuning).items()}
        steps.append(
            LineageStep(step="tune_oos_threshold", params={"split": "validation", **rounded})
        )
    return steps


def write_serving_tokenizer(
    source: Path, target: Path, max_length: int, pad_token_id: int | None = None
) -> Path:
    """Save the tokenizer padding to the longest text of a batch, not to a fixed length as upstream
    files do, with the model's own padding token, which the service reads back.

    The token must come from the model: after vocabulary pruning, or in an MPNet vocabulary that
    holds both ``<pad>`` (the model's) and ``[PAD]``, the tokenizer file alone does not say it.
    """
    tokenizer = Tokenizer.from_file(str(source))
    if pad_token_id is None:
        pad_token_id = (tokenizer.padding or {}).get("pad_id")
    pad_token = None if pad_token_id is None else tokenizer.id_to_token(pad_token_id)
    if pad_token is None:
        tokenizer.no_padding()  # the service falls back to [PAD]
    else:
        tokenizer.enable_padding(pad_id=pad_token_id, pad_token=pad_token)
    tokenizer.enable_truncation(max_length=max_length)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(target))
    return target


def measure(
    classifier: OnnxClassifier,
    model: Path,
    data: TextClassificationData,
    parameters: int,
    config: PackageConfig,
    rejection: OosThreshold | None = None,
) -> OfflineMetrics:
    test = data.splits["test"]
    threshold = rejection.threshold if rejection else None
    served = served_accuracy(classifier, test, data.oos_id, threshold)
    report = served.alone
    # Fixed, shuffled test utterances, so latency and throughput cover the length distribution.
    rng = np.random.default_rng(0)
    shuffled = [test.texts[i] for i in rng.permutation(len(test))]
    sample = shuffled[: config.latency_samples]
    return OfflineMetrics(
        dataset=data.name,
        split="test",
        examples=report.examples,
        split_sizes={name: len(split) for name, split in data.splits.items()},
        split_origins=data.splits_made or None,
        data_notes=[note.without_folders() for note in data.notes] or None,
        accuracy=round(report.accuracy, 4),
        accuracy_without_threshold=(
            round(served.alone_without_threshold.accuracy, 4) if rejection else None
        ),
        macro_f1=round(report.macro_f1, 4),
        in_scope_accuracy=round_metric(report.in_scope_accuracy),
        oos_recall=round_metric(report.oos_recall),
        accuracy_batched=round(served.batched.accuracy, 4),
        batched_size=served.batch_size,
        answers_changed_by_batching=round(served.changed_by_batching, 4),
        size_bytes=model.stat().st_size,
        parameters=parameters,
        threads=config.benchmark_threads,
        latency_batch1=latency_batch1(classifier, sample),
        throughput_batch32_per_second=round(throughput(classifier, shuffled[:2048]), 1),
    )


def write_variant(
    name: str,
    base: ResolvedCheckpoint,
    lineage: list[LineageStep],
    metrics: OfflineMetrics | None,
    data: TextClassificationData,
    max_length: int,
    files: dict[str, Path],
    repository: Path,
    rejection: OosThreshold | None = None,
    description: str | None = None,
) -> Path:
    folder = repository / name
    staging = repository / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for target, source in files.items():
        shutil.copyfile(source, staging / target)
    for license_file in LICENSE_FILES:
        if (base.path / license_file).is_file():
            shutil.copyfile(base.path / license_file, staging / license_file)
    card = VariantCard(
        name=name,
        description=description
        or f"{base.reference} fine-tuned on {data.name}, "
        + " -> ".join(step.step for step in lineage),
        labels=list(data.labels),
        max_length=max_length,
        base=BaseCheckpoint(**base.as_card()),
        lineage=lineage,
        oos_threshold=rejection,
        files={path.name: file_entry(path) for path in sorted(staging.iterdir())},
        metrics=metrics,
        created_at=datetime.now(UTC).replace(microsecond=0),
        brum_version=__version__,
    )
    write_card(staging, card)
    write_model_card(staging, card)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _finetune_record(trained: Path) -> dict:
    done = trained / "finetune.json"
    return json.loads(done.read_text()) if done.is_file() else {}
