"""An already fine-tuned sequence-classification checkpoint as the teacher, without fine-tuning:
its labels (``config.id2label``) mapped onto the dataset's, by reordering the rows of its output
layer, so that its logits come out in the dataset's label order like a teacher brum fine-tuned.
Written where the fine-tuning would have been, it is used downstream exactly like one."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.data import DatasetError, TextClassificationData
from models.finetune import DONE_FILE, FinetuneConfig


def label_order(id2label: dict[int, str], labels: tuple[str, ...], source: Path) -> list[int]:
    """For each of the dataset's labels, the checkpoint's output index that scores it."""
    theirs = {name: int(index) for index, name in id2label.items()}
    if set(theirs) != set(labels) or len(theirs) != len(id2label):
        only_theirs = sorted(set(theirs) - set(labels))
        only_ours = sorted(set(labels) - set(theirs))
        raise DatasetError(
            f"{source}: the checkpoint's labels (config.json id2label) are not the dataset's: "
            f"only in the checkpoint {only_theirs}, only in the dataset {only_ours} "
            f"({len(id2label)} against {len(labels)} labels)"
        )
    return [theirs[label] for label in labels]


def output_layer(model: torch.nn.Module, labels: int) -> torch.nn.Linear:
    """The classification head's last linear layer: the last one with a row per label."""
    linears = [
        m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == labels
    ]
    if not linears:
        raise DatasetError(f"no output layer with {labels} outputs in {type(model).__name__}")
    return linears[-1]


def adopt_teacher(
    checkpoint: Path, data: TextClassificationData, output: Path, config: FinetuneConfig
) -> Path:
    if (output / DONE_FILE).is_file():
        return output
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    order = label_order(model.config.id2label, data.labels, checkpoint)
    layer = output_layer(model, len(order))
    with torch.no_grad():
        layer.weight.copy_(layer.weight[order])
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[order])
    model.config.id2label = dict(enumerate(data.labels))
    model.config.label2id = {label: i for i, label in enumerate(data.labels)}
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(output)
    record = {"config": asdict(config), "history": [], "adopted_from": str(checkpoint)}
    (output / DONE_FILE).write_text(json.dumps(record, indent=2))
    return output
