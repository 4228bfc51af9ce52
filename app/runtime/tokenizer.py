"""Tokenization with `tokenizers`: truncate to the model's maximum, pad to the longest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[bool]

    @property
    def token_counts(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """Load ``tokenizer.json``, truncating at ``max_length`` and padding to the longest text.

    Whatever padding the file asks for is replaced: a fixed length wastes compute on short texts.
    """
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_length)
    pad = tokenizer.padding or {}
    pad_token = pad.get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ValueError(f"{path}: the tokenizer has no padding token {pad_token!r}")
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, length=None)
    return tokenizer


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> EncodedBatch:
    encodings = tokenizer.encode_batch(texts)
    return EncodedBatch(
        input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
        attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
        token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
        truncated=[bool(e.overflowing) for e in encodings],
    )
