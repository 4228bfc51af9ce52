"""A variant's model card for people: ``README.md`` as the Hugging Face Hub reads it (YAML metadata,
then Markdown), written from ``variant.json``, which stays the contract the service reads and
checks. With it a variant folder can be uploaded to the Hub as it is, and read where it lies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.core.card import VariantCard

MODEL_CARD_FILE = "README.md"

# What the base checkpoint's LICENSE says, as the Hub's license ids.
_LICENSES = {"apache-2.0": ("Apache License", "Version 2.0"), "mit": ("MIT License",)}
# A path on the machine that built the variant, of no use to a reader elsewhere; lists and
# mappings (epoch histories, candidates) are left to variant.json too.
_MACHINE_ONLY = {"teacher_run"}


def write_model_card(folder: Path, card: VariantCard) -> Path:
    path = folder / MODEL_CARD_FILE
    path.write_text(render(card, folder), encoding="utf-8")
    return path


def render(card: VariantCard, folder: Path) -> str:
    sections = [
        f"---\n{yaml.safe_dump(_metadata(card, folder), sort_keys=False, width=100)}---",
        f"# {card.name}",
        f"{card.description}.\n\nBuilt by brum {card.brum_version} on "
        f"{card.created_at:%Y-%m-%d}. The brum service reads `variant.json`, the machine-readable "
        "card this page is written from, and checks the files below against it at start-up.",
        _labels(card),
        _evaluation(card),
        _lineage(card),
        _usage(card),
        _files(card),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _metadata(card: VariantCard, folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    license_id = _license(folder)
    if license_id:
        meta["license"] = license_id
    if card.base.source != "local":  # the Hub takes a repository id here, not a path
        meta["base_model"] = card.base.reference
    meta |= {
        "library_name": "onnx",
        "pipeline_tag": card.task,
        "tags": ["onnx", card.task, *_compression_tags(card), "brum"],
    }
    if card.metrics is not None:
        m = card.metrics
        metrics = [{"type": "accuracy", "value": m.accuracy, "name": "Accuracy"}]
        if m.macro_f1 is not None:
            macro = {"average": "macro"}
            metrics.append({"type": "f1", "value": m.macro_f1, "name": "Macro F1", "args": macro})
        meta["model-index"] = [
            {
                "name": card.name,
                "results": [
                    {
                        "task": {"type": card.task},
                        "dataset": {"name": m.dataset, "type": m.dataset, "split": m.split},
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return meta


def _license(folder: Path) -> str | None:
    path = folder / "LICENSE"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    for license_id, marks in _LICENSES.items():
        if all(mark in text for mark in marks):
            return license_id
    return None


def _compression_tags(card: VariantCard) -> list[str]:
    steps = {step.step for step in card.lineage}
    tags = []
    if "distill" in steps:
        tags.append("knowledge-distillation")
    if any(step.startswith("prune_") and step != "prune_vocabulary" for step in steps):
        tags.append("pruned")
    if card.quantization != "none":
        tags.append(card.quantization)
    return tags


def _labels(card: VariantCard) -> str:
    shown = ", ".join(f"`{label}`" for label in card.labels)
    lines = [
        "## Labels",
        f"{len(card.labels)} labels; texts are cut to {card.max_length} tokens.",
    ]
    if card.oos_threshold is not None:
        t = card.oos_threshold
        lines.append(
            f"Where the top probability is under {t.threshold:.3f} (tuned on {t.split} for "
            f"{t.objective}), the answer is `{t.label}`."
        )
    lines.append(f"<details><summary>All labels</summary>\n\n{shown}\n\n</details>")
    return "\n\n".join(lines)


def _evaluation(card: VariantCard) -> str:
    m = card.metrics
    if m is None:
        return "## Evaluation\n\nNot measured: the card holds no offline metrics."
    rows = [
        ("dataset, split", f"{m.dataset}, {m.split} ({m.examples:,} texts)"),
    ]
    if m.split_origins and m.split in m.split_origins:
        rows.append((f"the {m.split} split", m.split_origins[m.split]))
    rows.append(("accuracy, each text alone", f"{m.accuracy:.4f}"))
    optional = [
        ("macro F1", m.macro_f1),
        ("accuracy without the out-of-scope threshold", m.accuracy_without_threshold),
        ("in-scope accuracy", m.in_scope_accuracy),
        ("out-of-scope recall", m.oos_recall),
        (f"accuracy in batches of {m.batched_size}", m.accuracy_batched),
    ]
    rows += [(name, f"{value:.4f}") for name, value in optional if value is not None]
    rows += [
        ("size", f"{m.size_bytes / 1e6:.1f} MB, {m.parameters / 1e6:.1f}M parameters"),
        (
            f"latency at batch 1, {_threads(m.threads)}",
            f"p50 {m.latency_batch1.p50_ms:.2f} ms, p99 {m.latency_batch1.p99_ms:.2f} ms",
        ),
        (
            f"throughput at batch 32, {_threads(m.threads)}",
            f"{m.throughput_batch32_per_second:,.0f} texts/s",
        ),
    ]
    if m.all_threads and m.latency_batch1_all_threads is not None:
        rows.append(
            (
                f"latency at batch 1, {_threads(m.all_threads)}",
                f"p50 {m.latency_batch1_all_threads.p50_ms:.2f} ms",
            )
        )
    if m.benchmarked_at is not None:
        rows.append(("measured", f"{m.benchmarked_at:%Y-%m-%d %H:%M} UTC"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    section = f"## Evaluation\n\n| | |\n|---|---|\n{table}"
    if m.data_notes:
        noted = "\n".join(f"- {note}." for note in m.data_notes)
        warned = (
            "Reading the data warned of these, counted over all of it as read (before any sample"
        )
        warned += " a recipe takes); the figures above are measured on the data as it is"
        section += f"\n\n{warned}:\n\n{noted}"
    return section


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


def _lineage(card: VariantCard) -> str:
    base = card.base
    revision = f" at revision {base.revision}" if base.revision else ""
    lines = [
        "## How it was made",
        f"From `{base.reference}`{revision} ({base.source}; `{base.weights_file}` sha256 "
        f"`{base.sha256}`), in these steps:",
    ]
    steps = []
    for number, step in enumerate(card.lineage, 1):
        params = ", ".join(
            f"{key} {_short(value)}"
            for key, value in step.params.items()
            if key not in _MACHINE_ONLY and not isinstance(value, list | dict)
        )
        steps.append(f"{number}. `{step.step}`" + (f": {params}" if params else ""))
    lines.append("\n".join(steps))
    return "\n\n".join(lines)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _usage(card: VariantCard) -> str:
    return (
        "## Use\n\n"
        "With brum, from the repository folder that holds this variant:\n\n"
        "```bash\n"
        "BRUM_MODEL_REPOSITORY=path/to/repository make serve\n"
        f"curl -s localhost:8000/v1/models/{card.name}/predict "
        "-H 'content-type: application/json' -d '{\"text\": \"...\"}'\n"
        "```\n\n"
        "With onnxruntime alone (`encode_batch` pads a batch to its longest text):\n\n"
        "```python\n"
        "import numpy as np, onnxruntime as ort\n"
        "from tokenizers import Tokenizer\n\n"
        'tokenizer = Tokenizer.from_file("tokenizer.json")\n'
        f"tokenizer.enable_truncation({card.max_length})\n"
        'session = ort.InferenceSession("model.onnx")\n'
        'encoding = tokenizer.encode("...")\n'
        "feeds = {\n"
        '    "input_ids": [encoding.ids],\n'
        '    "attention_mask": [encoding.attention_mask],\n'
        '    "token_type_ids": [encoding.type_ids],\n'
        "}\n"
        "inputs = {i.name for i in session.get_inputs()}\n"
        "feeds = {k: np.array(v, np.int64) for k, v in feeds.items() if k in inputs}\n"
        "logits = session.run(None, feeds)[0]\n"
        "```\n\n"
        "Output `i` of the logits is the `i`-th label of `variant.json`."
    )


def _files(card: VariantCard) -> str:
    rows = "\n".join(
        f"| `{name}` | {entry.size_bytes:,} | `{entry.sha256}` |"
        for name, entry in card.files.items()
    )
    return f"## Files\n\n| file | bytes | sha256 |\n|---|---|---|\n{rows}"
