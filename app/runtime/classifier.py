"""A text classifier: tokenizer + onnxruntime session, texts in, logits out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding

from app.runtime.session import SessionConfig, create_session
from app.runtime.tokenizer import EncodedBatch, TextEncoder, load_tokenizer


@dataclass(frozen=True)
class ClassifierOutput:
    logits: np.ndarray  # [batch, labels], float32
    token_counts: np.ndarray  # real (unpadded) tokens per text
    truncated: list[bool]
    inference_seconds: float  # time inside session.run only


@dataclass(frozen=True)
class OnnxClassifier:
    tokenizer: TextEncoder
    session: ort.InferenceSession
    input_names: tuple[str, ...]

    @property
    def threads(self) -> int:
        return self.session.get_session_options().intra_op_num_threads

    def encode(self, texts: list[str]) -> EncodedBatch:
        return self.tokenizer.encode_batch(texts)

    def tokenize(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode(texts)

    def run(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return self.session.run(None, {name: feeds[name] for name in self.input_names})[0]

    def classify(self, texts: list[str]) -> ClassifierOutput:
        batch = self.encode(texts)
        started = time.perf_counter()
        logits = self.run(batch)
        elapsed = time.perf_counter() - started
        return ClassifierOutput(logits, batch.token_counts, batch.truncated, elapsed)


def load_classifier(
    model_path: Path, tokenizer_path: Path, max_length: int, config: SessionConfig
) -> OnnxClassifier:
    session = create_session(model_path, config)
    input_names = tuple(i.name for i in session.get_inputs())
    unknown = set(input_names) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown:
        raise ValueError(f"{model_path}: unsupported model inputs {sorted(unknown)}")
    return OnnxClassifier(load_tokenizer(tokenizer_path, max_length), session, input_names)
