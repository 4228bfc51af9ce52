"""Each variant's model file as onnxruntime loads it, against the graph brum runs
(app/runtime/graph.py: SkipLayerNormalization undone), side by side in one process: texts per
second at batch 1 and in length-sorted batches of 16, on 1 and 2 threads, and how many test
answers differ.

    python -m loadtests.graph [--repository DIR] [--texts 800] [--rounds 3]

Prints a markdown table and writes it, with JSON, to loadtests/results/graph/.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import onnxruntime as ort

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.classifier import OnnxClassifier, load_classifier
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY
from loadtests.peers.__main__ import test_texts
from loadtests.processes import ROOT, cpu_model

BATCHES = (1, 16)
THREADS = (1, 2)


def as_filed(classifier: OnnxClassifier, model: Path, threads: int) -> OnnxClassifier:
    """The same tokenizer over the file as onnxruntime loads it by default."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return OnnxClassifier(classifier.tokenizer, session, classifier.input_names)


def texts_per_second(classifier: OnnxClassifier, batches: list) -> float:
    started = time.perf_counter()
    for batch in batches:
        classifier.run(batch)
    return sum(len(b.input_ids) for b in batches) / (time.perf_counter() - started)


def measure(folder: Path, texts: list[str], rounds: int) -> dict:
    card = read_card(folder)
    rows = {}
    for threads in THREADS:
        brum = load_classifier(
            folder / MODEL_FILE, folder / TOKENIZER_FILE, card.max_length, SessionConfig(threads)
        )
        plain = as_filed(brum, folder / MODEL_FILE, threads)
        ordered = sorted(texts, key=lambda text: len(brum.tokenize([text])[0].ids))
        for size in BATCHES:
            batches = [
                brum.encode(ordered[start : start + size]) for start in range(0, len(ordered), size)
            ]
            best = {"file": 0.0, "brum": 0.0}
            for _ in range(rounds):  # alternated, best of each: the machine drifts
                for name, classifier in (("file", plain), ("brum", brum)):
                    best[name] = max(best[name], texts_per_second(classifier, batches))
            rows[f"{threads}x{size}"] = {k: round(v, 1) for k, v in best.items()}
        if threads == 1:
            singles = [brum.encode([text]) for text in texts]
            differ = sum(int(brum.run(b).argmax() != plain.run(b).argmax()) for b in singles)
    return {"variant": folder.name, "rates": rows, "answers_differ": differ, "texts": len(texts)}


def render(results: list[dict], header: str) -> str:
    keys = [f"{t}x{b}" for t in THREADS for b in BATCHES]
    lines = [
        header,
        "",
        "| variant | "
        + " | ".join(f"{k.replace('x', ' thr, batch ')}" for k in keys)
        + " | answers that differ |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for result in results:
        cells = []
        for key in keys:
            rate = result["rates"][key]
            cells.append(
                f"{rate['file']:.0f} -> {rate['brum']:.0f} ({rate['brum'] / rate['file']:.2f}x)"
            )
        differ = f"{result['answers_differ']} of {result['texts']}"
        lines.append(f"| `{result['variant']}` | " + " | ".join(cells) + f" | {differ} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--texts", type=int, default=800, help="CLINC150 test utterances")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "loadtests" / "results" / "graph")
    args = parser.parse_args(argv)
    texts = test_texts(args.texts)
    folders = sorted(p.parent for p in args.repository.glob(f"*/{MODEL_FILE}"))
    results = [measure(folder, texts, args.rounds) for folder in folders]
    command = "python -m loadtests.graph " + " ".join(argv or [])
    header = (
        f"Texts/s, the file as onnxruntime loads it -> the graph brum runs; best of "
        f"{args.rounds} alternated rounds over {args.texts} CLINC150 test texts. "
        f"{cpu_model()}, {datetime.now(UTC):%Y-%m-%d %H:%MZ}, onnxruntime {ort.__version__}. "
        f"`{command.strip()}`"
    )
    table = render(results, header)
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "graph.md").write_text(table)
    (args.output / "graph.json").write_text(
        json.dumps({"header": header, "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
