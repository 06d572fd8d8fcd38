"""Capture residual-stream activations: only the hooks asked for, the forward stopped at the deepest layer."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from liedetect import __version__
from liedetect.bos import apply_bos, bos_policy, describe_bos
from liedetect.errors import CheckpointError, DataError, LayerError
from liedetect.models import check_hook, model_id, resolve_layers
# Marker, Span and parse_position live in liedetect.positions; they stay importable from here.
from liedetect.positions import Marker, Picker, Position, Span, parse_position, position_label, token_rows  # noqa: F401
from liedetect.progress import progress_bar


def texts_hash(texts: Sequence[str]) -> str:
    """A short content hash of a list of texts (order matters)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


@dataclass
class Encoded:
    """Tokenized texts before padding: token ids and character offsets per text."""

    ids: List[List[int]]
    offsets: List[List[Tuple[int, int]]]


def encode(model: Any, texts: Sequence[str], max_length: Optional[int] = None, truncate: bool = False,
           bos: Optional[str] = None) -> Encoded:
    """Tokenize with the model's tokenizer (its own special tokens, then the BOS policy) and check lengths."""
    tok = model.tokenizer
    if tok is None:
        raise DataError("This model has no tokenizer; load it with one to capture from text.")
    limit = max_length or getattr(model.cfg, "n_ctx", None) or 10**9
    enc = tok(list(texts), add_special_tokens=True, return_offsets_mapping=bool(tok.is_fast),
              truncation=truncate, max_length=limit if truncate else None)
    ids = enc["input_ids"]
    offsets = enc["offset_mapping"] if tok.is_fast else [[(0, 0)] * len(row) for row in ids]
    ids, offsets = apply_bos(ids, offsets, tok, bos_policy(model, bos))
    for i, row in enumerate(ids):
        if len(row) > limit:
            raise DataError(f"Text {i} is {len(row)} tokens long but the model takes at most {limit}; shorten it or pass --truncate.")
        if not row:
            raise DataError(f"Text {i} tokenizes to nothing; remove empty texts.")
    return Encoded(ids=ids, offsets=[list(map(tuple, o)) for o in offsets])


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> Tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id rows to one length; return (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        sl = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, sl] = torch.tensor(row, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


class _Enough(Exception):
    """Raised by the hook of the deepest layer asked: nothing above it (nor the unembedding) needs to run."""


def token_activations(model: Any, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      layers: Sequence[int], hook: str = "resid_post",
                      pick: Optional[Callable[[torch.Tensor], Any]] = None) -> Dict[int, Any]:
    """One batch through the model, stopped inside the hook of the deepest layer asked; {layer: [batch, seq, d]}.

    With `pick`, each layer keeps `pick(hidden)` instead (computed inside the hook, in the model's dtype), so no
    more than one layer's hidden states is alive at a time.
    """
    names = {check_hook(model, layer, hook): layer for layer in layers}
    store: Dict[int, Any] = {}
    deepest = max(layers)

    def keep(layer: int):
        def fn(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
            store[layer] = tensor if pick is None else pick(tensor)
            if layer == deepest:
                raise _Enough
            return tensor
        return fn

    device = next(model.parameters()).device
    with torch.inference_mode():
        try:
            model.run_with_hooks(
                input_ids.to(device),
                attention_mask=None if attention_mask is None else attention_mask.to(device),
                fwd_hooks=[(name, keep(layer)) for name, layer in names.items()],
                return_type=None,
            )
        except _Enough:
            pass
    missing = [layer for layer in layers if layer not in store]
    if missing:
        raise LayerError(f"The forward never reached hook {hook} of layer(s) {missing}; this architecture does not "
                         f"fire it, choose another --hook.")
    return store


@dataclass
class Activations:
    """Captured activations [n, n_layers, d] (or [tokens, n_layers, d] with `lengths` for position 'all')."""

    acts: torch.Tensor
    layers: List[int]
    hook: str
    model_id: str
    position: str
    texts_hash: str
    lengths: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of texts."""
        return len(self.lengths) if self.lengths is not None else self.acts.shape[0]

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return self.acts.shape[-1]

    @property
    def bos(self) -> str:
        """The BOS policy the texts were tokenized under ('auto' for captures that predate the record)."""
        return str(self.meta.get("bos", "auto"))

    @property
    def offsets(self) -> Optional[torch.Tensor]:
        """For position 'all': text i owns rows offsets[i]:offsets[i+1]."""
        if self.lengths is None:
            return None
        return torch.cat([torch.zeros(1, dtype=torch.long), self.lengths.long().cumsum(0)])

    def layer(self, layer: int) -> torch.Tensor:
        """Activations of one captured layer: [n, d] (or [tokens, d] for position 'all')."""
        if layer not in self.layers:
            raise DataError(f"Layer {layer} was not captured; these activations hold layers {self.layers}.")
        return self.acts[:, self.layers.index(layer)]

    def summary(self) -> str:
        """One line describing the capture."""
        return (f"{self.n} texts x {len(self.layers)} layers x d={self.d_model} "
                f"({self.hook}, position {self.position}, model {self.model_id})")

    def header(self) -> Dict[str, Any]:
        """Metadata written to the JSON sidecar."""
        return {"format": "liedetect.activations/1", "version": __version__, "layers": self.layers, "hook": self.hook,
                "model_id": self.model_id, "position": self.position, "texts_hash": self.texts_hash, **self.meta}

    def save(self, path: Union[str, Path]) -> Path:
        """Write as a folder: meta.json plus one safetensors shard (atomic per file)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_shard(path / "shard-00000.safetensors", self.acts, self.lengths, self.labels)
        _write_json(path / "meta.json", {**self.header(), "n": self.n, "shards": 1, "complete": True})
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Activations":
        """Read an activations folder written by `save` or by a sharded `extract`."""
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise CheckpointError(f"{path} is not an activations folder (no meta.json); create it with `liedetect extract`.")
        meta = json.loads(meta_file.read_text())
        if not meta.get("complete"):
            raise CheckpointError(f"{path} holds an unfinished capture; run the same extract command again to resume it.")
        shards = [_read_shard(path / f"shard-{k:05d}.safetensors") for k in range(meta["shards"])]
        acts = torch.cat([s["acts"] for s in shards])
        lengths = torch.cat([s["lengths"] for s in shards]) if "lengths" in shards[0] else None
        labels = torch.cat([s["labels"] for s in shards]) if "labels" in shards[0] else None
        known = {"format", "version", "layers", "hook", "model_id", "position", "texts_hash", "n", "shards", "complete",
                 "shard_size"}
        return cls(acts=acts, layers=list(meta["layers"]), hook=meta["hook"], model_id=meta["model_id"],
                   position=meta["position"], texts_hash=meta["texts_hash"], lengths=lengths, labels=labels,
                   meta={k: v for k, v in meta.items() if k not in known})


def _write_json(path: Path, obj: Dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _write_shard(path: Path, acts: torch.Tensor, lengths: Optional[torch.Tensor], labels: Optional[torch.Tensor]) -> None:
    tensors = {"acts": acts.contiguous()}
    if lengths is not None:
        tensors["lengths"] = lengths.contiguous()
    if labels is not None:
        tensors["labels"] = labels.contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def _read_shard(path: Path) -> Dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, FileNotFoundError) as exc:
        raise CheckpointError(f"Shard {path} is missing or corrupt ({exc}); delete it and rerun extract to recompute it.") from None


def _capture(model: Any, texts: Sequence[str], layers: List[int], position: Position, hook: str, batch_size: int,
             padding_side: str, enc: Encoded, on_batch=None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Capture a list of texts in length-sorted batches; results in input order, float32 on the CPU."""
    order = sorted(range(len(texts)), key=lambda i: len(enc.ids[i]))
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    pieces: List[Optional[torch.Tensor]] = [None] * len(texts)  # position 'all': [tokens, L, d] per text
    fixed: Optional[torch.Tensor] = None  # other positions: [n, L, d], filled batch by batch
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = pad_batch([enc.ids[i] for i in chunk], pad_id, padding_side)
        picker = Picker([token_rows(mask[row], enc.offsets[i], texts[i], position, i) for row, i in enumerate(chunk)])
        per_layer = token_activations(model, ids, mask, layers, hook, pick=picker)
        if position == "all":
            for row, i in enumerate(chunk):
                pieces[i] = torch.stack([per_layer[layer][row] for layer in layers], dim=1).cpu()
        else:
            batch = torch.stack([per_layer[layer] for layer in layers], dim=1).cpu()  # [b, L, d]
            if fixed is None:
                fixed = torch.empty((len(texts),) + tuple(batch.shape[1:]), dtype=batch.dtype)
            fixed[torch.tensor(chunk)] = batch
        if on_batch is not None:
            on_batch(len(chunk))
    if position == "all":
        lengths = torch.tensor([r.shape[0] for r in pieces], dtype=torch.long)
        return torch.cat(pieces), lengths
    return fixed, None


def model_dtype(model: Any) -> str:
    """The dtype the model computes in ('float32', 'bfloat16', ...), recorded with every capture."""
    return str(next(model.parameters()).dtype).replace("torch.", "")


def _capture_job(model: Any, texts: List[str], ids: List[List[int]], offsets: List[List[Tuple[int, int]]],
                 layers: List[int], position: Position, hook: str, batch_size: int, padding_side: str):
    """`_capture` of one shard from plain lists (what a Ray actor receives)."""
    return _capture(model, texts, layers, position, hook, batch_size, padding_side, Encoded(ids=ids, offsets=offsets))


def extract(model: Any, texts: Sequence[str], layers: Union[str, int, Sequence[int]] = "all", position: Position = "last",
            hook: str = "resid_post", batch_size: int = 32, labels: Optional[Sequence[int]] = None,
            out: Union[None, str, Path] = None, shard_size: int = 1024, padding_side: str = "right",
            truncate: bool = False, progress: bool = True, bos: Optional[str] = None, engine: str = "local",
            ray_options: Optional[Dict[str, Any]] = None) -> Activations:
    """Capture residual activations of `texts` at `layers`; with `out`, stream shards to disk and resume.

    `engine="ray"` captures the shards on a Ray cluster (`liedetect.extract_ray`; `ray_options` as for scoring) and
    writes the same files as the local engine.
    `bos` ('auto', 'always', 'never'; default: the model's policy, see `liedetect.bos`) and the model's dtype are
    recorded in the metadata; activations come back in float32 whatever dtype the model computes in.
    """
    texts = list(texts)
    if not texts:
        raise DataError("No texts to capture: the dataset is empty.")
    if engine not in ("local", "ray") or (engine == "ray" and out is None):
        raise DataError(f"Unknown engine {engine!r}; use local or ray." if engine not in ("local", "ray") else
                        "The ray engine writes shards: give an output folder (--out).")
    if isinstance(position, str) and position not in ("last", "mean", "all"):
        position = parse_position(position)
    layer_list = resolve_layers(layers, model.cfg.n_layers)
    for layer in layer_list:
        check_hook(model, layer, hook)
    label_tensor = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
    if label_tensor is not None and len(label_tensor) != len(texts):
        raise DataError(f"{len(label_tensor)} labels for {len(texts)} texts.")
    enc = encode(model, texts, truncate=truncate, bos=bos)
    base = Activations(acts=torch.empty(0), layers=layer_list, hook=hook, model_id=model_id(model),
                       position=position_label(position), texts_hash=texts_hash(texts),
                       meta={**describe_bos(model, bos), "dtype": model_dtype(model)})
    if out is None:
        with progress_bar("capturing", total=len(texts), enabled=progress) as advance:
            acts, lengths = _capture(model, texts, layer_list, position, hook, batch_size, padding_side, enc, advance)
        base.acts, base.lengths, base.labels = acts, lengths, label_tensor
        return base
    return _extract_sharded(model, texts, enc, base, position, batch_size, label_tensor, Path(out), shard_size,
                            padding_side, progress, (ray_options or {}) if engine == "ray" else None)


def _extract_sharded(model, texts, enc, base: Activations, position, batch_size, labels, out: Path, shard_size: int,
                     padding_side: str, progress: bool, ray_options: Optional[Dict[str, Any]] = None) -> Activations:
    """Write shard files one by one (write then rename); skip shards a previous run finished; one writer per folder."""
    from liedetect.paths import OutputLock, check_outputs

    check_outputs([out], folder=[True])
    with OutputLock(out):
        return _write_shards(model, texts, enc, base, position, batch_size, labels, out, shard_size, padding_side, progress,
                             ray_options)


def _write_shards(model, texts, enc, base: Activations, position, batch_size, labels, out: Path, shard_size: int,
                  padding_side: str, progress: bool, ray_options: Optional[Dict[str, Any]]) -> Activations:
    out.mkdir(parents=True, exist_ok=True)
    n_shards = (len(texts) + shard_size - 1) // shard_size
    header = {**base.header(), "n": len(texts), "shards": n_shards, "shard_size": shard_size}
    meta_file = out / "meta.json"
    if meta_file.exists():
        try:
            old = json.loads(meta_file.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            old = None
        if not isinstance(old, dict):
            raise CheckpointError(f"{out} holds a meta.json that is not a liedetect capture; choose a new --out folder.")
        same = {k: old.get(k) for k in header} == header
        if not same:
            raise CheckpointError(f"{out} already holds a different capture (other texts, model, layers or shard size); "
                                  f"choose a new --out folder or delete it.")
        if old.get("complete"):
            return Activations.load(out)
    _write_json(meta_file, {**header, "complete": False})
    todo = []
    for k in range(n_shards):
        shard = out / f"shard-{k:05d}.safetensors"
        if shard.exists():
            try:
                load_file(str(shard))
                continue
            except (SafetensorError, OSError):
                shard.unlink()
        todo.append(k)
    done = sum(min(shard_size, len(texts) - k * shard_size) for k in range(n_shards) if k not in todo)
    slices = {k: slice(k * shard_size, min((k + 1) * shard_size, len(texts))) for k in todo}
    jobs = {k: (texts[sl], Encoded(ids=enc.ids[sl], offsets=enc.offsets[sl])) for k, sl in slices.items()}
    with progress_bar("capturing", total=len(texts), enabled=progress, completed=done) as advance:
        if ray_options is None:
            results = ((k, *_capture(model, t, base.layers, position, base.hook, batch_size, padding_side, e, advance))
                       for k, (t, e) in jobs.items())
        else:
            from liedetect.extract_ray import ray_shards

            capture = functools.partial(_capture_job, layers=base.layers, position=position, hook=base.hook,
                                        batch_size=batch_size, padding_side=padding_side)
            results = ray_shards(model, jobs, capture, ray_options)
        for k, acts, lengths in results:  # in shard order; each shard is written whole as soon as it arrives
            sl = slices[k]
            _write_shard(out / f"shard-{k:05d}.safetensors", acts, lengths, None if labels is None else labels[sl])
            if ray_options is not None:
                advance(sl.stop - sl.start)
    _write_json(meta_file, {**header, "complete": True})
    return Activations.load(out)
