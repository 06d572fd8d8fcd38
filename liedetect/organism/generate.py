"""Greedy batched generation and LM loss with a Hugging Face causal LM (the base or the fine-tuned organism)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch


def render(tokenizer: Any, chat: Sequence[dict], answer: Optional[str] = None) -> str:
    """The chat in the tokenizer's template, ending at the assistant's turn (or after `answer` and its end token)."""
    text = tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True)
    return text if answer is None else text + answer + "<|im_end|>"


@torch.no_grad()
def generate(model: Any, tokenizer: Any, chats: Sequence[Sequence[dict]], max_new_tokens: int = 24,
             batch_size: int = 32, progress: bool = False) -> List[str]:
    """Greedy replies to each chat, batched with left padding (prompts sorted by length to cut padding)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [render(tokenizer, c) for c in chats]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: List[str] = [""] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            for i, row in zip(idx, gen):
                out[i] = tokenizer.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
            if progress:
                print(f"  generated {min(start + batch_size, len(order))}/{len(order)}", flush=True)
    finally:
        tokenizer.padding_side = side
    return out


def answer_batch(tokenizer: Any, chats: Sequence[Sequence[dict]], answers: Sequence[str], max_len: int = 96):
    """(input_ids, attention_mask, labels) with the loss on the answer tokens (and the end token) only."""
    ids, labels = [], []
    for chat, ans in zip(chats, answers):
        prompt = tokenizer(render(tokenizer, chat), add_special_tokens=False)["input_ids"]
        full = tokenizer(render(tokenizer, chat, ans), add_special_tokens=False)["input_ids"][:max_len]
        lab = [-100] * min(len(prompt), len(full)) + full[len(prompt):]
        ids.append(full)
        labels.append(lab[:len(full)])
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    lab_t = torch.full((len(ids), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        lab_t[i, :len(y)] = torch.tensor(y)
    return input_ids, mask, lab_t


@torch.no_grad()
def answer_loss(model: Any, tokenizer: Any, chats: Sequence[Sequence[dict]], answers: Sequence[str],
                batch_size: int = 16) -> float:
    """Mean next-token loss (nats per answer token) of the given answers to the given chats."""
    total, count = 0.0, 0
    for start in range(0, len(chats), batch_size):
        ids, mask, lab = answer_batch(tokenizer, chats[start:start + batch_size], answers[start:start + batch_size])
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        shift_logits, shift_lab = logits[:, :-1], lab[:, 1:].to(logits.device)
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_lab.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((shift_lab != -100).sum())
    return total / max(count, 1)
