"""The teacher: fine-tuned once, then its logits on the training split saved for distillation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from models.adopt import adopt_teacher
from models.augment import AugmentSpec, augment
from models.checkpoints import resolve
from models.data import TextClassificationData, with_splits_trained
from models.finetune import FinetuneConfig, finetune, native_bf16, predict_logits
from models.pooling import load_classifier
from models.recipe import Recipe, RecipeError
from models.stamps import texts_digest, weights_digest
from models.student import starting_weights

LOGITS_FILE = "train_logits.npy"
# Where the CPU multiplies bfloat16 natively the teacher labels texts in half the time: on
# BANKING77's validation split 12.6 s against 25.1 s, the same argmax on every text, KL(fp32 ||
# bf16) at T=4 of 1.3e-6 (BENCHMARKS.md, issue 14).
LABEL_IN_BF16 = native_bf16()
TRANSFER_TEXTS = "texts.json"
LABELS_STAMP = "logits_made_by.json"


def teacher_dir(recipe: Recipe, runs: Path) -> Path:
    return runs / recipe.name / "teacher"


def train_teacher(recipe: Recipe, data: TextClassificationData, runs: Path) -> Path:
    """Fine-tune the teacher and save its training-split logits; each step is skipped once done."""
    workdir = teacher_dir(recipe, runs)
    base = resolve(recipe.teacher.base)
    config = FinetuneConfig(**recipe.teacher.finetune)
    if recipe.teacher.refit and data.oos_id is not None:
        raise RecipeError(
            "teacher: refit trains on the validation split, where the out-of-scope threshold "
            "is tuned; drop refit or the dataset's oos_label"
        )
    if recipe.teacher.fine_tuned:
        model_dir = adopt_teacher(base.path, data, workdir / "finetune", config)
    else:
        start = starting_weights(base.path, None, workdir, recipe.teacher.pooling or "cls")
        train_data = with_splits_trained(data, recipe.teacher.trained_on)
        model_dir = finetune(start, train_data, workdir / "finetune", config)
    split_logits(recipe, data, runs, "train")
    return model_dir


def forget_stale_labels(recipe: Recipe, runs: Path) -> None:
    """Drop every cached logit unless the teacher's weights now are the ones that computed them
    (a teacher trained again). Logits cached before this record existed are taken as the current
    teacher's."""
    workdir = teacher_dir(recipe, runs)
    stamp = workdir / LABELS_STAMP
    teacher = {"teacher_weights": weights_digest(workdir / "finetune")}
    if stamp.is_file() and json.loads(stamp.read_text()) != teacher:
        print("==> the teacher changed: its cached logits are computed again", flush=True)
        for stale in workdir.glob("*_logits.npy"):
            stale.unlink()
        for pattern in ("transfer-*", "unlabelled-*"):
            for stale in workdir.glob(pattern):
                shutil.rmtree(stale)
    stamp.write_text(json.dumps(teacher))


def split_logits(
    recipe: Recipe, data: TextClassificationData, runs: Path, split: str
) -> torch.Tensor:
    """The teacher's logits on one split of ``data``, one row per text, computed once."""
    forget_stale_labels(recipe, runs)
    texts = data.splits[split].texts
    path = teacher_dir(recipe, runs) / f"{split}_logits.npy"
    stamp = path.with_suffix(".json")
    digest = texts_digest(texts)
    if path.is_file() and not _labels_texts(path, stamp, digest, len(texts)):
        print(f"==> the {split} split changed: the teacher labels it again", flush=True)
        path.unlink()
    if not path.is_file():
        print(f"==> teacher logits on the {split} split", flush=True)
        np.save(path, _label(recipe, runs, texts))
    stamp.write_text(json.dumps({"texts": digest}))
    return torch.from_numpy(np.load(path))


def _labels_texts(path: Path, stamp: Path, digest: str, count: int) -> bool:
    """Whether cached logits are the ones of these texts: by their stamp, or, cached before
    stamps, by their count."""
    if stamp.is_file():
        return json.loads(stamp.read_text())["texts"] == digest
    return np.load(path, mmap_mode="r").shape[0] == count


def transfer_set(
    recipe: Recipe,
    data: TextClassificationData,
    runs: Path,
    spec: AugmentSpec,
    split: str = "train",
) -> tuple[list[str], torch.Tensor]:
    """Perturbed texts of one split and the teacher's logits on them, computed once per ``spec``."""
    forget_stale_labels(recipe, runs)
    # Unset options leave the key (and so the cached texts and logits) as it was before them.
    key = hashlib.sha256(spec.model_dump_json(exclude_none=True).encode()).hexdigest()[:12]
    folder = teacher_dir(recipe, runs) / (
        f"transfer-{key}" if split == "train" else f"transfer-{key}-{split}"
    )
    texts_path, logits_path = folder / TRANSFER_TEXTS, folder / LOGITS_FILE
    source = texts_digest(data.splits[split].texts)
    # Sets made before the source was recorded are taken as made from the split as it is.
    if logits_path.is_file() and json.loads(texts_path.read_text()).get("source", source) != source:
        print(f"==> the {split} split changed: its transfer set is made again", flush=True)
        logits_path.unlink()
    if not logits_path.is_file():
        texts = augment(data.splits[split].texts, spec)
        print(f"==> teacher logits on {len(texts)} augmented {split} texts ({spec})", flush=True)
        logits = _label(recipe, runs, texts)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"spec": spec.model_dump(exclude_none=True), "source": source, "texts": texts}
        texts_path.write_text(json.dumps(record))
        np.save(logits_path, logits)
    texts = json.loads(texts_path.read_text())["texts"]
    return texts, torch.from_numpy(np.load(logits_path))


def unlabelled_set(
    recipe: Recipe, data: TextClassificationData, runs: Path
) -> tuple[list[str], torch.Tensor]:
    """The dataset's unlabelled texts and the teacher's logits on them, computed once per set of
    texts (its digest names the folder)."""
    forget_stale_labels(recipe, runs)
    texts = list(data.unlabelled)
    folder = teacher_dir(recipe, runs) / f"unlabelled-{texts_digest(texts)[:12]}"
    logits_path = folder / LOGITS_FILE
    if not logits_path.is_file():
        print(f"==> teacher logits on {len(texts)} unlabelled texts", flush=True)
        logits = _label(recipe, runs, texts)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(logits_path, logits)
    return texts, torch.from_numpy(np.load(logits_path))


def _label(recipe: Recipe, runs: Path, texts: list[str]) -> np.ndarray:
    model_dir = teacher_dir(recipe, runs) / "finetune"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_classifier(model_dir)
    max_length = FinetuneConfig(**recipe.teacher.finetune).max_length
    logits = predict_logits(model, tokenizer, texts, max_length, progress=True, bf16=LABEL_IN_BF16)
    return logits.numpy().astype(np.float32)
