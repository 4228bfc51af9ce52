"""``python -m models import``: a model you already have, as a served variant with a card.

Two kinds of source: an ONNX folder exactly as ``optimum-cli export onnx --task
text-classification`` writes it (``model.onnx``, ``config.json`` with ``id2label``, tokenizer
files), served as it is or quantized to int8; or a fine-tuned Hugging Face checkpoint, exported
with optimum, fused and quantized as brum's own variants are. Labels come from ``id2label``, in
id order; the lineage says ``imported``, with the source's sha256. With test data (a recipe's
dataset), the card gets offline metrics on its test split, labels matched by name.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

from app.core.card import MODEL_FILE, TOKENIZER_FILE, LineageStep, sha256_file
from models.build import PackageConfig, measure, stage, write_serving_tokenizer, write_variant
from models.checkpoints import WEIGHT_FILES, ResolvedCheckpoint
from models.data import DatasetError, TextClassificationData, from_examples
from models.recipe import DatasetSpec

logger = logging.getLogger("brum.import")

DEFAULT_MAX_LENGTH = 128


def source_labels(config: dict, source: Path, names: list[str] | None = None) -> list[str]:
    """The model's labels in output order: ``names`` when given (one per output), else
    ``id2label``'s."""
    id2label = config.get("id2label")
    if not id2label:
        raise DatasetError(f"{source}/config.json: no id2label; the variant's labels come from it")
    ids = sorted(int(i) for i in id2label)
    if ids != list(range(len(ids))):
        raise DatasetError(f"{source}/config.json: id2label ids are not 0..{len(ids) - 1}: {ids}")
    if names is not None:
        if len(names) != len(ids):
            raise DatasetError(
                f"{source}: {len(names)} label names for a model of {len(ids)} outputs"
            )
        return names
    labels = [id2label[str(i)] if str(i) in id2label else id2label[i] for i in ids]
    if all(re.fullmatch(r"LABEL_\d+", label) for label in labels):
        logger.warning(
            "%s/config.json: the labels are transformers' placeholders (%s, ...), and answers "
            "will name them so; give their names with --label-names FILE",
            source,
            labels[0],
        )
    return labels


# Families whose position ids start after the padding id, as RoBERTa's do: 514 positions hold
# 512 tokens.
PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text"}


def max_length_of(source: Path, config: dict, given: int | None) -> int:
    """``given``, else the tokenizer's ``model_max_length``, within the model's positions."""
    positions = config.get("max_position_embeddings", DEFAULT_MAX_LENGTH)
    if config.get("model_type") in PADDING_OFFSET_POSITIONS:
        positions -= config.get("pad_token_id", 1) + 1
    if given is not None:
        if given > positions:
            raise DatasetError(
                f"{source}: --max-length {given} is more than the model's {positions} positions"
            )
        return given
    tokenizer_config = source / "tokenizer_config.json"
    declared = DEFAULT_MAX_LENGTH
    if tokenizer_config.is_file():
        declared = json.loads(tokenizer_config.read_text()).get("model_max_length", declared)
    return int(min(declared, positions, 512))


def fast_tokenizer(source: Path, folder: Path) -> Path:
    """A ``tokenizer.json`` for a source that has only a slow tokenizer's files (``vocab.txt``,
    ``spiece.model``), converted by transformers as ``AutoTokenizer`` does."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    except Exception as exc:  # whatever the tokenizer class raises on files it cannot read
        raise DatasetError(
            f"{source}: no {TOKENIZER_FILE}, and transformers cannot load a tokenizer there to "
            f"convert: {exc}"
        ) from exc
    if not tokenizer.is_fast:
        raise DatasetError(
            f"{source}: no {TOKENIZER_FILE}, and {type(tokenizer).__name__} has no fast version; "
            "the service needs one"
        )
    tokenizer.save_pretrained(folder)
    return folder / TOKENIZER_FILE


def in_model_order(data: TextClassificationData, labels: list[str]) -> TextClassificationData:
    """The data with label ids in the model's output order; its labels must be the model's."""
    if set(data.labels) != set(labels):
        raise DatasetError(
            f"the model's labels are not the test data's: only in the model "
            f"{sorted(set(labels) - set(data.labels))}, only in the data "
            f"{sorted(set(data.labels) - set(labels))}"
        )
    examples = {
        split: [(t, data.labels[y]) for t, y in zip(s.texts, s.label_ids, strict=True)]
        for split, s in data.splits.items()
    }
    ordered = from_examples(data.name, examples, labels, data.oos_label)
    # Everything else read with the data (how its splits were made, its notes) goes on the card.
    return replace(data, labels=ordered.labels, splits=ordered.splits)


def import_variant(
    source: Path,
    name: str,
    repository: Path,
    quantization: str = "dynamic",
    dataset: DatasetSpec | None = None,
    max_length: int | None = None,
    workdir: Path | None = None,
    label_names: list[str] | None = None,
) -> Path:
    from models.export import count_initializer_elements, export_onnx, optimize_graph, quantize_int8
    from models.sources import load_dataset

    config_path = source / "config.json"
    if not config_path.is_file():
        raise DatasetError(f"{source}: no config.json (an optimum export or a checkpoint has one)")
    config = json.loads(config_path.read_text())
    labels = source_labels(config, source, label_names)
    length = max_length_of(source, config, max_length)
    workdir = workdir or Path("runs") / "import" / name
    source_tokenizer = source / TOKENIZER_FILE
    if not source_tokenizer.is_file():
        source_tokenizer = fast_tokenizer(source, workdir / "tokenizer")
    onnx_source = source / MODEL_FILE
    if onnx_source.is_file():
        kind, weights, exported = "onnx", onnx_source, onnx_source
        steps = []
    else:
        weights = next((source / w for w in WEIGHT_FILES if (source / w).is_file()), None)
        if weights is None:
            raise DatasetError(f"{source}: neither {MODEL_FILE} nor {' / '.join(WEIGHT_FILES)}")
        kind = "checkpoint"
        stage("export to ONNX (optimum)")
        exported = export_onnx(source, workdir / "export" / MODEL_FILE)
        steps = [LineageStep(step="export_onnx", params={"exporter": "optimum"})]
    served = exported
    if quantization == "dynamic":
        stage("fuse graph and quantize dynamic int8")
        for step in ("fused", "int8"):
            (workdir / step).mkdir(parents=True, exist_ok=True)
        fused = optimize_graph(exported, workdir / "fused" / MODEL_FILE, config_path)
        served = quantize_int8(fused, workdir / "int8" / MODEL_FILE)
        steps += [
            LineageStep(step="optimize_graph", params={"tool": "onnxruntime.transformers"}),
            LineageStep(step="quantize_dynamic", params={"weight_type": "int8"}),
        ]
    tokenizer = write_serving_tokenizer(
        source_tokenizer, workdir / TOKENIZER_FILE, length, config.get("pad_token_id")
    )
    sha = sha256_file(weights)
    base = ResolvedCheckpoint(str(source), source, weights.name, sha, "imported")
    lineage = [
        LineageStep(
            step="imported",
            params={
                "from": str(source),
                "kind": kind,
                "sha256": sha,
                "labels": "--label-names" if label_names else "id2label",
            },
        ),
        *steps,
    ]
    metrics = None
    data = TextClassificationData(name, tuple(labels), {})
    if dataset is not None:
        from app.runtime.classifier import load_classifier
        from app.runtime.session import SessionConfig

        stage("evaluate on the test split")
        data = in_model_order(load_dataset(dataset), labels)
        classifier = load_classifier(served, tokenizer, length, SessionConfig(intra_op_threads=1))
        parameters = count_initializer_elements(exported)
        metrics = measure(classifier, served, data, parameters, PackageConfig())
    folder = write_variant(
        name,
        base,
        lineage,
        metrics,
        data,
        length,
        {MODEL_FILE: served, TOKENIZER_FILE: tokenizer},
        repository,
    )
    return folder
