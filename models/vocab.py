"""Vocabulary pruning: keep the word pieces the domain uses, drop the rest of the embedding matrix.

all-MiniLM-L6-v2 spends 11.7M of its 22.7M parameters on 30,522 word-piece embeddings; CLINC150's
training utterances use about 5,000 of them. The kept pieces keep their embedding rows unchanged,
so the model needs no retraining: a word seen in training tokenizes exactly as before (WordPiece
is greedy longest-match-first and every piece it chose is kept), and an unseen word falls back to
shorter kept pieces or ``[UNK]``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer

TOKENIZER_JSON = "tokenizer.json"
PLACEHOLDER = re.compile(r"^\[unused\d+\]$")


def count_token_ids(tokenizer_path: Path, texts: list[str]) -> Counter[int]:
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    counts: Counter[int] = Counter()
    for encoding in tokenizer.encode_batch(texts):
        counts.update(encoding.ids)
    return counts


def special_token_ids(tokenizer_json: dict) -> set[int]:
    return {token["id"] for token in tokenizer_json["added_tokens"]}


def character_ids(tokenizer_json: dict) -> set[int]:
    """Single ASCII characters, alone and as ``##`` continuations.

    Kept so that an unseen ASCII word still splits into known pieces instead of becoming [UNK]:
    WordPiece maps a whole word to [UNK] as soon as one of its pieces is missing.
    """
    prefix = tokenizer_json["model"].get("continuing_subword_prefix", "##")
    return {
        i
        for token, i in tokenizer_json["model"]["vocab"].items()
        if len(token.removeprefix(prefix)) == 1 and token.removeprefix(prefix).isascii()
    }


def general_ids(tokenizer_json: dict, count: int) -> set[int]:
    """The ``count`` lowest ids that are not placeholders.

    BERT's WordPiece vocabulary lists its pieces roughly by frequency in the pre-training corpus,
    so these are the commonest English words: kept, they cover words the domain's training split
    never used but its live traffic will.
    """
    vocab = tokenizer_json["model"]["vocab"]
    special = special_token_ids(tokenizer_json)
    ordered = sorted(
        i for token, i in vocab.items() if i not in special and not PLACEHOLDER.match(token)
    )
    return set(ordered[:count])


def kept_ids(
    tokenizer_json: dict,
    counts: Counter[int],
    min_count: int,
    keep_characters: bool = True,
    general: int = 0,
) -> list[int]:
    """Old ids to keep, in order: special tokens, pieces seen ``min_count`` times, and fallbacks."""
    used = {token_id for token_id, count in counts.items() if count >= min_count}
    if keep_characters:
        used |= character_ids(tokenizer_json)
    if general:
        used |= general_ids(tokenizer_json, general)
    return sorted(used | special_token_ids(tokenizer_json))


def remap_tokenizer(tokenizer_json: dict, keep: list[int]) -> dict:
    """A copy of a WordPiece ``tokenizer.json`` holding only ``keep``, renumbered densely."""
    if tokenizer_json["model"]["type"] != "WordPiece":
        raise ValueError(
            f"vocabulary pruning supports WordPiece, not {tokenizer_json['model']['type']}"
        )
    new_id = {old: new for new, old in enumerate(keep)}
    by_old_id = {i: token for token, i in tokenizer_json["model"]["vocab"].items()}
    pruned = json.loads(json.dumps(tokenizer_json))
    pruned["model"]["vocab"] = {by_old_id[old]: new for new, old in enumerate(keep)}
    for token in pruned["added_tokens"]:
        token["id"] = new_id[token["id"]]
    processor = pruned.get("post_processor") or {}
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    if pruned.get("padding"):
        pruned["padding"]["pad_id"] = new_id[pruned["padding"]["pad_id"]]
    return pruned


def prune_embeddings(model: torch.nn.Module, keep: list[int], pad_token_id: int | None) -> None:
    """Keep the embedding rows of ``keep`` (old ids), in order; the new id is the index in keep."""
    old = model.get_input_embeddings()
    index = torch.tensor(keep)
    embeddings = torch.nn.Embedding(len(keep), old.embedding_dim, padding_idx=pad_token_id)
    embeddings.weight.data = old.weight.data[index].clone()
    model.set_input_embeddings(embeddings)
    model.config.vocab_size = len(keep)
    model.config.pad_token_id = pad_token_id


def prune_vocabulary(
    model_dir: Path,
    output: Path,
    texts: list[str],
    min_count: int = 1,
    keep_characters: bool = True,
    general: int = 0,
) -> dict:
    """Write a copy of ``model_dir`` (model + tokenizer) with only the pieces ``texts`` use."""
    from transformers import AutoTokenizer

    from models.pooling import load_classifier

    tokenizer_json = json.loads((model_dir / TOKENIZER_JSON).read_text())
    counts = count_token_ids(model_dir / TOKENIZER_JSON, texts)
    keep = kept_ids(tokenizer_json, counts, min_count, keep_characters, general)
    pruned_json = remap_tokenizer(tokenizer_json, keep)
    new_id = {old: new for new, old in enumerate(keep)}

    model = load_classifier(model_dir)
    old_pad = model.config.pad_token_id
    prune_embeddings(model, keep, new_id.get(old_pad) if old_pad is not None else None)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)

    # Save through transformers so tokenizer_config.json and vocab.txt agree with tokenizer.json.
    staged = output / TOKENIZER_JSON
    staged.write_text(json.dumps(pruned_json, ensure_ascii=False))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, tokenizer_file=str(staged))
    tokenizer.save_pretrained(output)
    return {
        "min_count": min_count,
        "keep_characters": keep_characters,
        "general": general,
        "corpus_texts": len(texts),
        "vocab_size_before": len(tokenizer_json["model"]["vocab"]),
        "vocab_size_after": len(keep),
    }
