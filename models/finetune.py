"""Fine-tune a pretrained encoder for sequence classification with a plain PyTorch loop.

Batches are formed from examples of similar length and padded to the longest in the batch: CLINC150
utterances are short, so this is several times faster than padding to a fixed length. The run saves
its state after every epoch and resumes from it when restarted.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from models.data import Split, TextClassificationData
from models.pooling import load_classifier, pooling_of
from models.recipe import Pooling, StaleRunError
from models.sparsity import keep_zeros, zero_masks
from models.stamps import texts_digest, weights_digest

STATE_FILE = "train_state.pt"
DONE_FILE = "finetune.json"
# The weights of the best epoch so far, while a run that keeps its best epoch trains.
BEST_FILE = "best_epoch.pt"
# Epochs over a large transfer set last most of an hour here: save the state within them too,
# so a killed run loses at most this long.
CHECKPOINT_SECONDS = 600.0
IGNORE = -100  # the label of a text only the teacher has labelled


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 8
    learning_rate: float = 1e-4
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 0
    max_steps: int | None = None  # stop early: used by smoke tests
    # Knowledge distillation, used when teacher logits are given: the chapter's
    # alpha * CE + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
    # or with soft_loss "mse" alpha * CE + (1 - alpha) * ||student - teacher||^2 on the logits
    # themselves (Kim et al. 2021, "Comparing Kullback-Leibler Divergence and Mean Squared Error
    # Loss in Knowledge Distillation"), where the temperature plays no part.
    temperature: float = 1.0
    alpha: float = 1.0
    soft_loss: Literal["kl", "mse"] = "kl"
    # Recovery after magnitude pruning: weights that start at zero stay zero.
    keep_zeros: bool = False
    # End with the epoch of the best validation accuracy (the later of equals), not the last:
    # what Hugging Face's Trainer calls load_best_model_at_end. Only where validation is held out.
    keep_best: bool = False
    # bfloat16 autocast for the forward pass; None: wherever the CPU multiplies bfloat16 natively.
    bf16: bool | None = None


def native_bf16() -> bool:
    """AVX512-BF16 or AMX: there a bfloat16 training step of MPNet takes 0.55 of a float32 one
    (5.5 s against 9.9 s, batch 32, 2 cores). Elsewhere bfloat16 is emulated and slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    soft_loss: str = "kl",
) -> torch.Tensor:
    """The chapter's loss; rows labelled ``IGNORE`` (transfer-set texts) add only the soft part."""
    labelled = labels != IGNORE
    hard = (
        torch.nn.functional.cross_entropy(student_logits[labelled], labels[labelled])
        if labelled.any()
        else student_logits.new_zeros(())
    )
    if soft_loss == "mse":
        soft = (student_logits - teacher_logits).pow(2).sum(dim=-1).mean()
        return alpha * hard + (1 - alpha) * soft
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(student_logits / temperature, dim=-1),
        torch.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * hard + (1 - alpha) * temperature**2 * soft


def length_bucketed_batches(
    lengths: list[int], batch_size: int, rng: random.Random, bucket_batches: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length inside large buckets, cut into batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def collate(tokenizer: PreTrainedTokenizerBase, ids: list[list[int]]) -> dict[str, torch.Tensor]:
    return tokenizer.pad({"input_ids": ids}, padding="longest", return_tensors="pt")


@torch.inference_mode()
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    batch_size: int = 128,
    progress: bool = False,
    bf16: bool = False,
) -> torch.Tensor:
    """One row of logits per text, in the order given; run in batches of similar length, each
    padded to its longest. ``bf16``: matrix products in bfloat16, for a teacher labelling texts
    (see models/teacher.py)."""
    model.eval()
    ids = encode(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    logits = torch.empty(len(ids), model.config.num_labels)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="predict", disable=not progress, leave=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits[batch] = model(**collate(tokenizer, [ids[i] for i in batch])).logits.float()
    return logits


def accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, split: Split, max_length: int
) -> float:
    logits = predict_logits(model, tokenizer, split.texts, max_length)
    return float((logits.argmax(-1) == torch.tensor(split.label_ids)).float().mean())


def load_for_classification(base: Path, labels: tuple[str, ...]) -> PreTrainedModel:
    return load_classifier(
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def check_same_run(
    output: Path,
    recorded: dict,
    config: FinetuneConfig,
    examples: int,
    start: str,
    data: str,
    pooling: Pooling,
) -> None:
    """Refuse to reuse or resume a run in ``output`` that the recipe no longer describes: other
    settings, other training texts (by count, and by ``data``, the training split's digest),
    other starting weights (a parent trained again), another head on them (``pooling``). Runs
    recorded before a setting existed are not held to it; bf16 "auto" matches what it chose."""
    asked = asdict(config)
    before = recorded.get("config", {})
    changed = {
        key: (before[key], value)
        for key, value in asked.items()
        if key in before and key != "bf16" and before[key] != value
    }
    if recorded.get("examples", examples) != examples:
        changed["training texts"] = (recorded["examples"], examples)
    elif recorded.get("data", data) != data:
        changed["training split"] = (recorded["data"][:12], data[:12])
    if recorded.get("start_weights", start) != start:
        changed["starting weights"] = (recorded["start_weights"][:12], start[:12])
    if recorded.get("pooling", "cls") != pooling:
        changed["pooling"] = (recorded["pooling"], pooling)
    if config.bf16 is not None and before.get("bf16") not in (None, config.bf16):
        changed["bf16"] = (before["bf16"], config.bf16)
    if changed:
        differences = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
        raise StaleRunError(
            f"{output} holds a run with other settings ({differences}); "
            f"delete it to train again, or restore the recipe"
        )


def finetune(
    base: Path,
    data: TextClassificationData,
    output: Path,
    config: FinetuneConfig,
    progress: bool = True,
    teacher_logits: torch.Tensor | None = None,
    transfer: tuple[list[str], torch.Tensor] | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> Path:
    """Fine-tune ``base`` on ``data``'s train split; returns the saved model directory.

    With ``teacher_logits`` (one row per training example), train on the distillation loss;
    ``transfer`` adds unlabelled texts with the teacher's logits on them (see models/augment.py).
    """
    train = data.splits["train"]
    examples = len(train) + (len(transfer[0]) if transfer is not None else 0)
    start, pooling = weights_digest(base), pooling_of(base)
    data_digest = texts_digest(train.texts, train.label_ids)
    if (output / DONE_FILE).is_file():
        recorded = json.loads((output / DONE_FILE).read_text())
        check_same_run(output, recorded, config, examples, start, data_digest, pooling)
        return output
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = load_for_classification(base, data.labels)
    texts, labels = list(train.texts), torch.tensor(train.label_ids)
    if transfer is not None:
        if teacher_logits is None:
            raise ValueError("a transfer set needs the teacher's logits on the training split")
        transfer_texts, transfer_logits = transfer
        texts += transfer_texts
        labels = torch.cat([labels, torch.full((len(transfer_texts),), IGNORE)])
        teacher_logits = torch.cat([teacher_logits, transfer_logits])
    ids = encode(tokenizer, texts, config.max_length)
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    masks = zero_masks(model) if config.keep_zeros else []
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    start_epoch, step, history = 0, 0, []
    done_in_epoch, running = 0, 0.0
    # Weights, optimizer state and the loss stay float32; only the matrix products go bfloat16.
    bf16 = native_bf16() if config.bf16 is None else config.bf16
    state_path = output / STATE_FILE
    best_path = output / BEST_FILE
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        check_same_run(output, state, config, examples, start, data_digest, pooling)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        done_in_epoch, running = state["batches_done"], state["running_loss"]
        torch.set_rng_state(state["rng"])
        print(
            f"resuming {output} in epoch {start_epoch + 1} after {done_in_epoch} batches "
            f"(step {step})",
            flush=True,
        )

    def save_state(epoch: int, batches_done: int, running_loss: float) -> None:
        partial = state_path.with_suffix(".partial")
        torch.save(
            {
                "rng": torch.get_rng_state(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
                "history": history,
                "batches_done": batches_done,
                "running_loss": running_loss,
                "config": asdict(config),
                "examples": examples,
                "start_weights": start,
                "pooling": pooling,
                "data": data_digest,
            },
            partial,
        )
        partial.replace(state_path)  # a kill while saving leaves the previous state whole

    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        model.train()
        # The same seed gives the same batches, so a resumed epoch skips the ones it has done.
        rng = random.Random(config.seed * 1000 + epoch)
        batches = length_bucketed_batches([len(x) for x in ids], config.batch_size, rng)
        skip, done_in_epoch = done_in_epoch, 0
        running = running if skip else 0.0
        saved_at = time.monotonic()
        bar = tqdm(
            total=len(batches),
            initial=skip,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
        )
        n = skip
        for n, batch in enumerate(batches[skip:], start=skip + 1):
            inputs = collate(tokenizer, [ids[i] for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**inputs).logits.float()
            if teacher_logits is None:
                loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            else:
                loss = distillation_loss(
                    logits,
                    teacher_logits[batch],
                    labels[batch],
                    config.temperature,
                    config.alpha,
                    config.soft_loss,
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            keep_zeros(masks)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{running / n:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step >= total_steps:
                break
            if time.monotonic() - saved_at >= checkpoint_seconds:
                save_state(epoch, n, running)
                saved_at = time.monotonic()
        bar.close()
        val_accuracy = accuracy(model, tokenizer, data.splits["validation"], config.max_length)
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": running / n,
                "validation_accuracy": val_accuracy,
            }
        )
        print(json.dumps(history[-1]), flush=True)
        if config.keep_best and best_epoch(history) is history[-1]:
            partial = best_path.with_suffix(".partial")
            torch.save(model.state_dict(), partial)
            partial.replace(best_path)
        save_state(epoch + 1, 0, 0.0)

    kept = best_epoch(history) if config.keep_best and history else None
    if kept is not None and kept["epoch"] != history[-1]["epoch"]:
        print(
            f"keeping epoch {kept['epoch']} of {history[-1]['epoch']}: validation "
            f"{kept['validation_accuracy']:.4f} against {history[-1]['validation_accuracy']:.4f} "
            "at the last",
            flush=True,
        )
        model.load_state_dict(torch.load(best_path, weights_only=True))
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    state_path.unlink(missing_ok=True)
    best_path.unlink(missing_ok=True)
    (output / DONE_FILE).write_text(
        json.dumps(
            {
                "config": asdict(config) | {"bf16": bf16},
                "examples": examples,
                "start_weights": start,
                "pooling": pooling,
                "data": data_digest,
                "history": history,
                **({"kept_epoch": kept["epoch"]} if kept is not None else {}),
            },
            indent=2,
        )
    )
    return output


def best_epoch(history: list[dict]) -> dict:
    """The epoch of the best validation accuracy; of equals, the later (trained longer)."""
    return max(reversed(history), key=lambda h: h["validation_accuracy"])
