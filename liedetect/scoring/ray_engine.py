"""Scale-out scoring with Ray Data: the batch plan is split into shards, each scored by an actor that holds
one model replica; records stream back to the driver in plan order, so the output file is the same
as the local engine's, byte for byte."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from liedetect.errors import LiedetectError
from liedetect.scoring.render import Encoding
from liedetect.scoring.scorer import Scorer
from liedetect.scoring.transcripts import Message, Transcript


class RayEngineError(LiedetectError):
    """Ray is missing or the scoring job cannot be placed on the cluster."""


def encoding_to_json(enc: Encoding) -> Dict[str, Any]:
    """A plain-JSON form of an encoded transcript (what travels to the actors)."""
    t = enc.transcript
    return {"id": t.id, "line": t.line, "label": t.label, "group": t.group, "raw": t.raw,
            "messages": [[m.role, m.content, m.label] for m in t.messages], "ids": enc.ids,
            "ranges": enc.ranges, "pieces": enc.pieces, "truncated": enc.truncated, "cut": enc.cut}


def encoding_from_json(d: Dict[str, Any]) -> Encoding:
    """Inverse of `encoding_to_json`."""
    t = Transcript(id=d["id"], messages=[Message(r, c, lab) for r, c, lab in d["messages"]], label=d["label"],
                   group=d["group"], line=d["line"], raw=d["raw"])
    return Encoding(transcript=t, ids=d["ids"], ranges=[tuple(r) if r else None for r in d["ranges"]],
                    pieces=d["pieces"], truncated=d["truncated"], cut=d["cut"])


class _ScoreActor:
    """One model replica; scores one planned batch per call."""

    def __init__(self, model_factory: Callable[[], Any], probe: Any, layer: int, hook: str, aggregate: str,
                 threads: Optional[int]) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.scorer = Scorer(model_factory(), probe, layer, hook, aggregate)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = []
        for payload in batch["payload"]:
            encs = [encoding_from_json(e) for e in json.loads(payload)]
            out.append(json.dumps(self.scorer.score(encs)))
        return {"k": batch["k"], "records": np.array(out, dtype=object)}


def default_factory(model: Any) -> Callable[[], Any]:
    """How an actor rebuilds `model`: by the spec it was loaded from (only 'organism' is known without help)."""
    from liedetect.models import load_model

    spec = getattr(model, "liedetect_spec", None) or getattr(model, "liedetect_id", None)
    if spec == "organism" or getattr(model, "liedetect_spec", None):
        return functools.partial(load_model, spec)
    raise RayEngineError("The ray engine needs to rebuild the model in each actor; pass "
                         "ray_options={'model_factory': callable} or load the model with --model SPEC.")


def ray_runner(model: Any, probe: Any, layer: int, hook: str, aggregate: str, model_factory: Optional[Callable] = None,
               num_actors: Optional[int] = None, cpus_per_actor: float = 1, gpus_per_actor: Optional[float] = None,
               threads_per_actor: Optional[int] = None, address: Optional[str] = None,
               init_kwargs: Optional[Dict[str, Any]] = None):
    """A batch runner (see `liedetect.scoring.run_scoring`) that scores on a Ray cluster with Ray Data."""
    try:
        import ray
    except ImportError:
        raise RayEngineError("--engine ray needs Ray Data: pip install 'liedetect[ray]' (or 'ray[data]').") from None
    factory = model_factory or default_factory(model)

    def run(batches: List[List[Encoding]]) -> Iterator[List[Dict[str, Any]]]:
        if not batches:
            return
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        items = [{"k": k, "payload": json.dumps([encoding_to_json(e) for e in b])} for k, b in enumerate(batches)]
        gpus = gpus_per_actor
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        n = num_actors or max(1, int((ray.cluster_resources().get("GPU", 0) // gpus) if gpus else
                                     ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
        n = max(1, min(n, len(items)))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * n))
        ds = ds.map_batches(_ScoreActor, fn_constructor_args=(factory, probe, layer, hook, aggregate,
                                                             threads_per_actor or int(cpus_per_actor) or 1),
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus_per_actor,
                            num_gpus=gpus or None)
        expected = 0
        for row in ds.iter_rows():
            if int(row["k"]) != expected:
                raise RayEngineError(f"Ray returned batch {row['k']} where {expected} was expected; "
                                     "this Ray version does not preserve order.")
            expected += 1
            yield json.loads(row["records"])

    return run
