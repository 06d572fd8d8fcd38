"""The model pass: apply a probe at its layer to exactly the scored tokens, and build one record per transcript.

Sign convention: the deception score of a token is the negation of the probe's ``decision_function``
(> 0 where it reads *true*), so higher = more suspicious.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from liedetect.errors import DataError, ProbeMismatchError
from liedetect.scoring.render import Encoding, encode_transcript
from liedetect.scoring.transcripts import Transcript, label_name

AGGREGATES = ("mean", "max", "last")


def probe_site(probe: Any, layer: Optional[int] = None, hook: Optional[str] = None) -> Tuple[int, str]:
    """The layer and hook a probe reads (from its saved metadata unless given explicitly)."""
    meta = getattr(probe, "meta_", None) or {}
    layer = meta.get("layer") if layer is None else layer
    hook = meta.get("hook", "resid_post") if hook is None else hook
    if layer is None:
        raise ProbeMismatchError("This probe's metadata records no layer; pass layer= (or --layer) to say which layer it reads.")
    if isinstance(hook, str) and hook.startswith("blocks."):  # a full hook name: keep its short form
        hook = hook.rsplit("hook_", 1)[-1]
    return int(layer), str(hook)


def scored_activations(model: Any, encs: Sequence[Encoding], layer: Union[int, Sequence[int]], hook: str = "resid_post",
                       pad_id: Optional[int] = None) -> Tuple[Any, List[int]]:
    """Activations [n_tokens, d] of exactly the scored tokens of a batch (a {layer: ...} dict when given
    several layers, from one forward), and how many tokens belong to each transcript."""
    from liedetect.activations import pad_batch, token_activations

    if pad_id is None:
        pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    layers = [layer] if isinstance(layer, int) else list(layer)
    ids, mask = pad_batch([e.ids for e in encs], pad_id, "right")
    hidden = token_activations(model, ids, mask, layers, hook)
    rows, cols, sizes = [], [], []
    for b, enc in enumerate(encs):
        n = 0
        for r in enc.ranges:
            if r is not None:
                rows.extend([b] * (r[1] - r[0]))
                cols.extend(range(r[0], r[1]))
                n += r[1] - r[0]
        sizes.append(n)
    device = hidden[layers[0]].device
    index = (torch.tensor(rows, device=device), torch.tensor(cols, device=device))
    picked = {l: hidden[l][index] for l in layers}
    return (picked[layer] if isinstance(layer, int) else picked), sizes


def training_activations(model: Any, transcripts: Sequence[Transcript], layers: Sequence[int], hook: str = "resid_post",
                         roles: Sequence[str] = ("assistant",), fmt: str = "auto", batch_size: int = 32,
                         system_prompt: str = "template") -> Tuple[Dict[int, torch.Tensor], np.ndarray, np.ndarray]:
    """Activations of the tokens scoring would read (for fitting a probe on the same positions; the detect mask
    applies): ({layer: [n_tokens, d]}, label per token (the message's), transcript index per token)."""
    tok = model.tokenizer
    n_ctx = getattr(model.cfg, "n_ctx", None)
    encs = [encode_transcript(tok, t, roles, fmt, n_ctx, "error", system_prompt) for t in transcripts]
    out: Dict[int, List[torch.Tensor]] = {layer: [] for layer in layers}
    labels: List[int] = []
    owner: List[int] = []
    for start in range(0, len(encs), batch_size):
        batch = encs[start:start + batch_size]
        picked, _ = scored_activations(model, batch, list(layers), hook)
        for layer in layers:
            out[layer].append(picked[layer].float().cpu())
        for k, enc in enumerate(batch):
            for i, r in enumerate(enc.ranges):
                if r is not None:
                    lab = enc.transcript.message_label(i)
                    labels.extend([-1 if lab is None else lab] * (r[1] - r[0]))
                    owner.extend([start + k] * (r[1] - r[0]))
    return {layer: torch.cat(v) for layer, v in out.items()}, np.array(labels), np.array(owner)


class Scorer:
    """Applies one probe at its layer to the scored tokens of batches of encoded transcripts."""

    def __init__(self, model: Any, probe: Any, layer: Optional[int] = None, hook: Optional[str] = None,
                 aggregate: str = "mean") -> None:
        from liedetect.models import check_hook, resolve_layers

        if aggregate not in AGGREGATES:
            raise DataError(f"Unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}.")
        self.model, self.probe, self.aggregate = model, probe, aggregate
        self.layer, self.hook = probe_site(probe, layer, hook)
        self.layer = resolve_layers(self.layer, model.cfg.n_layers)[0]  # a wrong one is named as the user wrote it
        check_hook(model, self.layer, self.hook)
        width = getattr(probe, "n_features_in_", None)
        if width is not None and int(width) != model.cfg.d_model:
            raise ProbeMismatchError(f"The probe reads {width}-wide activations but this model's residual stream is "
                                     f"{model.cfg.d_model} wide; use a probe trained on this model.")
        bos = ((getattr(probe, "meta_", None) or {}).get("bos")) or "auto"
        if bos != "auto":
            raise ProbeMismatchError(f"This probe was trained with --bos {bos}, but scoring reads transcripts exactly as "
                                     f"the tokenizer and its chat template write them (--bos auto); retrain it with --bos auto.")
        tok = model.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def token_scores(self, encs: Sequence[Encoding]) -> List[np.ndarray]:
        """Deception score of every scored token, one array per transcript (one forward for the batch)."""
        picked, sizes = scored_activations(self.model, encs, self.layer, self.hook, self.pad_id)
        with torch.inference_mode():
            scores = -self.probe.decision_function(picked.float().cpu())
        flat = np.asarray(torch.as_tensor(scores).detach().cpu().numpy(), dtype=np.float32)
        return list(np.split(flat, np.cumsum(sizes)[:-1]))

    def score(self, encs: Sequence[Encoding]) -> List[Dict[str, Any]]:
        """Score a batch and build one output record per transcript."""
        return [make_record(e, s, self.aggregate) for e, s in zip(encs, self.token_scores(encs))]


def _f(x: float) -> float:
    return float(round(float(x), 6))


def make_record(enc: Encoding, token_scores: np.ndarray, aggregate: str = "mean") -> Dict[str, Any]:
    """The JSON record of one scored transcript: per-token, per-message and per-transcript scores."""
    t = enc.transcript
    messages = []
    pos = 0
    for i, msg in enumerate(t.messages):
        entry: Dict[str, Any] = {"role": msg.role}
        label = t.message_label(i)
        r = enc.ranges[i]
        if r is None:
            entry.update({"scored": False, "content": msg.content})
        else:
            s = token_scores[pos:pos + r[1] - r[0]].astype(np.float64)
            pos += r[1] - r[0]
            entry.update({"scored": True, "label": label, "n_tokens": int(len(s)), "mean": _f(s.mean()),
                          "max": _f(s.max()), "last": _f(s[-1]), "tokens": enc.pieces[i],
                          "scores": [_f(v) for v in s]})
            if enc.cut[i]:
                entry["truncated"] = True
        messages.append(entry)
    scored = [i for i, m in enumerate(messages) if m["scored"]]
    all_scores = np.concatenate([np.asarray(messages[i]["scores"]) for i in scored])
    top = max(scored, key=lambda i: messages[i][aggregate])  # the message the transcript score comes from
    record = {"id": t.id, "line": t.line, "label": t.label, "group": t.group or label_name(t.label),
              "score": messages[top][aggregate], "score_message": top, "aggregate": aggregate,
              "token_mean": _f(all_scores.mean()), "n_tokens": int(len(all_scores)),
              "truncated_tokens": enc.truncated, "messages": messages}
    own = [i for i, m in enumerate(t.messages) if m.label is not None]
    if own and top not in own:  # labels sit on messages, but the transcript's score is another message's
        record["score_from_unlabelled"] = True
    return record


def label_source_warning(records: Sequence[Dict[str, Any]]) -> Optional[str]:
    """One sentence when transcripts carry labels on messages but their score comes from an unlabelled message."""
    off = [r["id"] for r in records if r.get("score_from_unlabelled")]
    if not off:
        return None
    return (f"{len(off)} of {len(records)} transcripts carry labels on messages but take their transcript score "
            f"(and report rank) from another, unlabelled message (first: {off[0]!r}); mark the messages to read "
            f"with \"detect\": true, or pass --roles so only the labelled messages are read.")
