"""The BOS policy: whether a beginning-of-sequence token starts each text fed to the model.

``auto`` (the default) does what the model's own tokenizer does with ``tokenizer(text)``: SmolLM2's
adds nothing, the organism's adds ``<bos>``, TransformerLens' GPT-2 tokenizer adds ``<|endoftext|>``.
Chats rendered by a chat template carry their own tokens either way. ``always`` makes sure the first
token is the tokenizer's BOS (adding it when absent); ``never`` removes a BOS the tokenizer added
(a BOS written in the text itself, such as a chat's ``<|im_start|>``, is kept).
The policy moves activations (15-20% on SmolLM2), so it is recorded with every capture and probe.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch

from liedetect.errors import DataError

BOS_POLICIES = ("auto", "always", "never")


def check_bos(policy: str) -> str:
    """Return the policy after checking that it is one of auto, always, never."""
    if policy not in BOS_POLICIES:
        raise DataError(f"Unknown BOS policy {policy!r}; use one of {', '.join(BOS_POLICIES)}.")
    return policy


def bos_policy(model: Any, policy: Optional[str] = None) -> str:
    """The policy to use: the one given, else the model's (set by `load_model(bos=...)`), else 'auto'."""
    return check_bos(policy or getattr(model, "liedetect_bos", None) or "auto")


def set_bos_policy(model: Any, policy: str) -> Any:
    """Record a BOS policy on a loaded model; `extract` and `generate` follow it unless told otherwise."""
    model.liedetect_bos = check_bos(policy)
    return model


def bos_token_id(tokenizer: Any) -> Optional[int]:
    """The tokenizer's BOS id, or None when it has none (TransformerLens gives BERT a BOS that is really [UNK])."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None or bos == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(bos)


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether `tokenizer(text)` puts the BOS token first on its own."""
    bos = bos_token_id(tokenizer)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]


def apply_bos(ids: List[List[int]], offsets: List[List[Tuple[int, int]]], tokenizer: Any,
              policy: str) -> Tuple[List[List[int]], List[List[Tuple[int, int]]]]:
    """Token rows (from `tokenizer(texts)`) and their character offsets, adjusted to the policy."""
    check_bos(policy)
    if policy == "auto":
        return ids, offsets
    bos = bos_token_id(tokenizer)
    if bos is None:
        if policy == "always":
            raise DataError("This tokenizer has no BOS token, so --bos always cannot apply; use --bos auto or never.")
        return ids, offsets
    if policy == "always":
        out = [(row, off) if row[:1] == [bos] else ([bos] + list(row), [(0, 0)] + list(off)) for row, off in zip(ids, offsets)]
    else:
        if not tokenizer_adds_bos(tokenizer):
            return ids, offsets
        out = [(row[1:], off[1:]) if row[:1] == [bos] else (row, off) for row, off in zip(ids, offsets)]
    return [list(r) for r, _ in out], [list(o) for _, o in out]


def prompt_tokens(model: Any, prompt: str, policy: Optional[str] = None) -> torch.Tensor:
    """One prompt as a [1, seq] token tensor on the model's device, under the BOS policy (for generation)."""
    tok = model.tokenizer
    ids, _ = apply_bos([tok(prompt, add_special_tokens=True)["input_ids"]], [[]], tok, bos_policy(model, policy))
    if not ids[0]:
        raise DataError("The prompt tokenizes to nothing; give some text (or use --bos always).")
    device = next(model.parameters()).device
    return torch.tensor(ids, dtype=torch.long, device=device)


def describe_bos(model: Any, policy: Optional[str] = None) -> dict:
    """The policy and what it did with this tokenizer, for metadata: `bos_added` says whether every plain text
    started with the BOS token `bos_token` (a file that says only "auto" hides which happened)."""
    tok = model.tokenizer
    chosen = bos_policy(model, policy)
    adds = tokenizer_adds_bos(tok) if tok is not None else None
    has_bos = tok is not None and bos_token_id(tok) is not None
    added = {"always": has_bos, "never": False, "auto": bool(adds)}[chosen]
    return {"bos": chosen, "bos_token": getattr(tok, "bos_token", None), "tokenizer_adds_bos": adds,
            "bos_added": added}


__all__: Sequence[str] = ("BOS_POLICIES", "apply_bos", "bos_policy", "bos_token_id", "check_bos", "describe_bos", "prompt_tokens",
                          "set_bos_policy", "tokenizer_adds_bos")
