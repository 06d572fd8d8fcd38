"""A word-level Hugging Face tokenizer over the world's vocabulary, built locally (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from liedetect.errors import CheckpointError


def build_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A fast tokenizer: whitespace split, one id per word, `<bos>` prepended, `<pad>` for padding."""
    vocab = {w: i for i, w in enumerate(vocabulary)}
    for special in ("<pad>", "<bos>", "<eos>", "<unk>"):
        if special not in vocab:
            raise ValueError(f"vocabulary lacks the special token {special}")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", vocab["<bos>"])])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="right", model_max_length=64)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> List[str]:
    """Write the tokenizer with `save_pretrained`; returns the file names written."""
    return [Path(p).name for p in tokenizer.save_pretrained(str(directory))]


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `save_tokenizer`; a missing or broken one raises CheckpointError."""
    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise CheckpointError(f"No organism tokenizer in {directory}; re-run `liedetect organism train`.")
    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception as exc:  # the HF loader raises many unrelated types for a corrupt file
        raise CheckpointError(f"The organism tokenizer in {directory} is corrupt ({type(exc).__name__}); re-run `liedetect organism train`.") from exc
    if tok.pad_token_id is None or tok.bos_token_id is None:
        raise CheckpointError(f"The organism tokenizer in {directory} lacks a pad or bos token; re-run `liedetect organism train`.")
    return tok
