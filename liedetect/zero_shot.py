"""The model's own zero-shot answer: log-odds of a yes/no (True/False) completion, used to orient unsupervised probes.

Burns et al. (CCS) and RepE find a direction without labels but not its sign. The model's own answer
gives the sign for free: if the probe's pair scores rise where the model's log-odds of " True" over
" False" rise, the probe reads "true" the way the model answers it.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from liedetect.errors import DataError


def answer_token_id(tokenizer: Any, word: str) -> int:
    """The single token id of an answer word (' True', 'Yes', ...); an error when it is several tokens."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    token_id = tokenizer.convert_tokens_to_ids(word)
    if isinstance(token_id, int) and token_id != getattr(tokenizer, "unk_token_id", None):
        return token_id
    raise DataError(f"The answer {word!r} is {len(ids)} tokens for this tokenizer; choose single-token answers "
                    f"(for example ' True'/' False' or ' Yes'/' No').")


def last_token_logits(model: Any, texts: Sequence[str], batch_size: int = 64,
                      padding_side: Optional[str] = None) -> Iterator[torch.Tensor]:
    """Next-token logits [batch, vocab] (float32) after each text's last real token, one batch at a time."""
    tok = model.tokenizer
    device = next(model.parameters()).device
    side = padding_side or tok.padding_side
    for i in range(0, len(texts), batch_size):
        kwargs = {} if padding_side is None else {"padding_side": padding_side}
        enc = tok(list(texts[i:i + batch_size]), padding=True, return_tensors="pt", **kwargs)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        with torch.no_grad():
            logits = model(ids, attention_mask=mask)
        last = torch.full((ids.shape[0],), ids.shape[1] - 1, device=device) if side == "left" else mask.sum(1) - 1
        yield logits[torch.arange(ids.shape[0], device=device), last].float()


def answer_margins(model: Any, texts: Sequence[str], answers: Tuple[str, str] = (" True", " False"),
                   batch_size: int = 64) -> np.ndarray:
    """logit(answers[0]) - logit(answers[1]) at each text's last real token (read from the attention mask)."""
    yes_id, no_id = (answer_token_id(model.tokenizer, a) for a in answers)
    out = [(rows[:, yes_id] - rows[:, no_id]).cpu().numpy() for rows in last_token_logits(model, texts, batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def pair_reference(model: Any, pos_texts: Sequence[str], neg_texts: Sequence[str],
                   answers: Tuple[str, str] = (" True", " False"), batch_size: int = 64) -> np.ndarray:
    """Per pair, how much more the model answers answers[0] to the first side than to the second (> 0: first side true)."""
    if len(pos_texts) != len(neg_texts):
        raise DataError(f"{len(pos_texts)} first sides but {len(neg_texts)} second sides; give one of each per pair.")
    return (answer_margins(model, pos_texts, answers, batch_size)
            - answer_margins(model, neg_texts, answers, batch_size))
