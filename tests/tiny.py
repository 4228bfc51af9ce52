"""A tiny randomly initialised BERT and a WordPiece tokenizer, built in seconds with no download."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: list[str], vocab_size: int = 600) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator(texts, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=128)  # as upstream files do
    return tokenizer


def save_tiny_bert(directory: Path, texts: list[str], hidden: int = 32, layers: int = 2) -> Path:
    """A pretrained-checkpoint stand-in: config, random weights and a tokenizer in ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_wordpiece(texts)
    fast = BertTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=64,
        **{
            "unk_token": "[UNK]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
        },
    )
    fast.save_pretrained(directory)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    return directory


def save_tiny_classifier(
    directory: Path, family: str, texts: list[str], id2label: dict[int, str]
) -> Path:
    """A tiny sequence classifier of another family than BERT, as users bring them: ``distilbert``
    (WordPiece, its own config names: ``n_heads``, ``dim``) or ``roberta`` (byte-level BPE,
    positions that start after the padding id)."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        PreTrainedTokenizerFast,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if family == "distilbert":
        tokenizer = train_wordpiece(texts)
        specials = dict(zip(("pad", "unk", "cls", "sep", "mask"), SPECIAL_TOKENS, strict=True))
        config = DistilBertConfig(
            vocab_size=tokenizer.get_vocab_size(),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            **labels,
        )
        model = DistilBertForSequenceClassification(config)
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        names = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=names,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        specials = dict(zip(("cls", "pad", "sep", "unk", "mask"), names, strict=True))
        config = RobertaConfig(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            **labels,
        )
        model = RobertaForSequenceClassification(config)
    model.save_pretrained(directory)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, **{f"{role}_token": token for role, token in specials.items()}
    )
    fast.save_pretrained(directory)
    return directory


def save_tiny_unigram_bert(directory: Path, texts: list[str], layers: int = 4) -> Path:
    """A BERT encoder with a SentencePiece-style (Unigram) vocabulary and XLM-R's special
    tokens, as multilingual MiniLM is: a student whose vocabulary cannot be pruned."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    names = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=names, unk_token="<unk>")
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    roles = ("bos", "pad", "eos", "unk", "mask")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        cls_token="<s>",
        sep_token="</s>",
        **{f"{role}_token": token for role, token in zip(roles, names, strict=True)},
    )
    fast.save_pretrained(directory)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
    )
    BertModel(config).save_pretrained(directory)
    return directory
