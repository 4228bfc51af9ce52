"""The model the framework peers (KServe, MLServer, BentoML) serve: tokenizers + onnxruntime on a
brum variant folder, texts in, (label, score) out, a batch padded to its longest text.

Imports only numpy, onnxruntime and tokenizers, so that it runs in every peer's environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


class TextClassifier:
    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        folder = Path(folder)
        card = json.loads((folder / "variant.json").read_text())
        self.labels: list[str] = card["labels"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=card["max_length"])
        # The exported file may pad everything to 128 tokens: pad to the longest in the batch.
        known = [t for t in ("[PAD]", "<pad>") if self.tokenizer.token_to_id(t) is not None]
        pad = (self.tokenizer.padding or {}).get("pad_token") or known[0]
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def classify(self, texts: list[str]) -> list[dict]:
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        logits = self.session.run(None, {name: feeds[name] for name in self.inputs})[0]
        scores = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        best = scores.argmax(axis=1)
        return [
            {"label": self.labels[i], "score": float(scores[row, i])} for row, i in enumerate(best)
        ]
