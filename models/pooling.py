"""How a classifier summarises a text: the ``[CLS]`` state through the checkpoint's pooler (what
``AutoModelForSequenceClassification`` builds), or the mean of the token states.

Sentence encoders such as all-MiniLM-L6-v2 were trained on the mean of their token states, so
their ``[CLS]`` state has never been asked to summarise a text; on BANKING77 a mean-pooled head
learned 0.4-1.2 points more than ``[CLS]`` (BENCHMARKS.md). The mean-pooled model exports to the
graph brum serves: the same three inputs and ``logits``.

A checkpoint records its pooling in ``config.json`` under ``POOLING_KEY``; ``load_classifier``
reads it, so every stage after training loads the model that was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from models.recipe import Pooling

POOLING_KEY = "sequence_pooling"


class MeanPooledForSequenceClassification(PreTrainedModel):
    """Any encoder ``AutoModel`` builds, a dropout and a linear layer on its mean token state."""

    # Not a prefix of any key an encoder saves (BERT's own "encoder.*" would be), so a bare
    # encoder checkpoint loads into the backbone and this model's own checkpoints load whole.
    base_model_prefix = "backbone"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.backbone = AutoModel.from_config(config, add_pooling_layer=False)
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = torch.nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        states = self.backbone(**encoder_inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def pooling_of(model_dir: Path) -> Pooling:
    return json.loads((model_dir / "config.json").read_text()).get(POOLING_KEY, "cls")


def load_classifier(model_dir: Path, **config_updates) -> PreTrainedModel:
    """A classifier checkpoint with the head it was trained with; ``config_updates`` (such as a
    new label set) apply before the weights load."""
    if pooling_of(model_dir) == "mean":
        config = AutoConfig.from_pretrained(model_dir, **config_updates)
        return MeanPooledForSequenceClassification.from_pretrained(
            model_dir, config=config, ignore_mismatched_sizes=bool(config_updates)
        )
    return AutoModelForSequenceClassification.from_pretrained(
        model_dir, **config_updates, ignore_mismatched_sizes=bool(config_updates)
    )


def mark_pooling(model_dir: Path, pooling: Pooling) -> None:
    """Record in an encoder checkpoint the head its classifier is to be built with."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {POOLING_KEY: pooling}, indent=2, sort_keys=True) + "\n")
