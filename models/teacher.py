"""The teacher: fine-tuned once, then its logits on the training split saved for distillation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.adopt import adopt_teacher
from models.augment import AugmentSpec, augment
from models.checkpoints import resolve
from models.data import TextClassificationData
from models.finetune import FinetuneConfig, finetune, native_bf16, predict_logits
from models.recipe import Recipe

LOGITS_FILE = "train_logits.npy"
# Where the CPU multiplies bfloat16 natively the teacher labels texts in half the time: on
# BANKING77's validation split 12.6 s against 25.1 s, the same argmax on every text, KL(fp32 ||
# bf16) at T=4 of 1.3e-6 (BENCHMARKS.md, issue 14).
LABEL_IN_BF16 = native_bf16()
TRANSFER_TEXTS = "texts.json"


def teacher_dir(recipe: Recipe, runs: Path) -> Path:
    return runs / recipe.name / "teacher"


def train_teacher(recipe: Recipe, data: TextClassificationData, runs: Path) -> Path:
    """Fine-tune the teacher and save its training-split logits; each step is skipped once done."""
    workdir = teacher_dir(recipe, runs)
    base = resolve(recipe.teacher.base)
    config = FinetuneConfig(**recipe.teacher.finetune)
    if recipe.teacher.fine_tuned:
        model_dir = adopt_teacher(base.path, data, workdir / "finetune", config)
    else:
        model_dir = finetune(base.path, data, workdir / "finetune", config)
    logits_path = workdir / LOGITS_FILE
    if not logits_path.is_file():
        print("==> teacher logits on the training split", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        logits = predict_logits(
            model,
            tokenizer,
            data.splits["train"].texts,
            config.max_length,
            progress=True,
            bf16=LABEL_IN_BF16,
        )
        np.save(logits_path, logits.numpy().astype(np.float32))
    return model_dir


def load_teacher_logits(recipe: Recipe, runs: Path, examples: int) -> torch.Tensor:
    logits = np.load(teacher_dir(recipe, runs) / LOGITS_FILE)
    if logits.shape[0] != examples:
        raise ValueError(f"teacher logits hold {logits.shape[0]} rows, the split {examples}")
    return torch.from_numpy(logits)


def transfer_set(
    recipe: Recipe, data: TextClassificationData, runs: Path, spec: AugmentSpec
) -> tuple[list[str], torch.Tensor]:
    """Augmented training texts and the teacher's logits on them, computed once per ``spec``."""
    key = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:12]
    folder = teacher_dir(recipe, runs) / f"transfer-{key}"
    texts_path, logits_path = folder / TRANSFER_TEXTS, folder / LOGITS_FILE
    if not logits_path.is_file():
        texts = augment(data.splits["train"].texts, spec)
        print(f"==> teacher logits on {len(texts)} augmented texts ({spec})", flush=True)
        model_dir = teacher_dir(recipe, runs) / "finetune"
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        max_length = FinetuneConfig(**recipe.teacher.finetune).max_length
        logits = predict_logits(
            model, tokenizer, texts, max_length, progress=True, bf16=LABEL_IN_BF16
        )
        folder.mkdir(parents=True, exist_ok=True)
        texts_path.write_text(json.dumps({"spec": spec.model_dump(), "texts": texts}))
        np.save(logits_path, logits.numpy().astype(np.float32))
    texts = json.loads(texts_path.read_text())["texts"]
    return texts, torch.from_numpy(np.load(logits_path))
