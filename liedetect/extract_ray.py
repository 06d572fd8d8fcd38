"""Capture on a Ray cluster: each shard of an `extract --out` job is captured by an actor holding one model replica
(Ray Data, as `score --engine ray` does); shards come back to the driver in order and are written there by the same
code as the local engine's, so the folder is the same byte for byte, and a rerun resumes from the shards written.

On a cluster: `ray start --head` on one machine, `ray start --address HEAD:6379` on the others, then the same
command with `ray_options={"address": "auto"}` (or RAY_ADDRESS=auto); each actor rebuilds the model from its spec.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from liedetect.errors import LiedetectError


class RayExtractError(LiedetectError):
    """Ray is missing or the capture cannot be placed on the cluster."""


def model_factory(model: Any) -> Callable[[], Any]:
    """How an actor rebuilds `model`: by the spec it was loaded from, in the same dtype."""
    from liedetect.models import load_model

    spec = getattr(model, "liedetect_spec", None) or (getattr(model, "liedetect_id", None) == "organism" and "organism")
    if not spec:
        raise RayExtractError("The ray engine rebuilds the model in each actor; load it with --model SPEC or pass "
                              "ray_options={'model_factory': callable}.")
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return functools.partial(load_model, spec, dtype=dtype)


class _CaptureActor:
    """One model replica; captures one shard per call and returns its tensors as safetensors bytes."""

    def __init__(self, factory: Callable[[], Any], capture: Callable, threads: Optional[int]) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = factory()
        self.capture = capture

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = []
        for payload in batch["payload"]:
            job = json.loads(payload)
            offsets = [list(map(tuple, o)) for o in job["offsets"]]
            acts, lengths = self.capture(self.model, job["texts"], job["ids"], offsets)
            tensors = {"acts": acts} if lengths is None else {"acts": acts, "lengths": lengths}
            out.append(save_bytes(tensors))
        return {"k": batch["k"], "tensors": np.array(out, dtype=object)}


def ray_shards(model: Any, jobs: Dict[int, Tuple[List[str], Any]], capture: Callable, options: Dict[str, Any]
               ) -> Iterator[Tuple[int, torch.Tensor, Optional[torch.Tensor]]]:
    """Capture each shard {k: (texts, Encoded)} on Ray actors; yield (k, acts, lengths) in shard order.

    `capture(model, texts, ids, offsets) -> (acts, lengths)` is the local engine's own capture (picklable).

    `options`: model_factory, num_actors, cpus_per_actor (1), gpus_per_actor (1 when the cluster has GPUs),
    threads_per_actor, address, init_kwargs.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayExtractError("--engine ray needs Ray Data: pip install 'liedetect[ray]' (or 'ray[data]').") from None
    if not jobs:
        return
    factory = options.get("model_factory") or model_factory(model)
    if not ray.is_initialized():
        ray.init(address=options.get("address"), include_dashboard=False, log_to_driver=False,
                 **(options.get("init_kwargs") or {}))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    keys = sorted(jobs)
    items = [{"k": k, "payload": json.dumps({"texts": jobs[k][0], "ids": jobs[k][1].ids, "offsets": jobs[k][1].offsets})}
             for k in keys]
    cpus = options.get("cpus_per_actor", 1)
    gpus = options.get("gpus_per_actor")
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    free = ray.cluster_resources().get("GPU", 0) // gpus if gpus else ray.cluster_resources().get("CPU", 1) // cpus
    n = max(1, min(int(options.get("num_actors") or free or 1), len(items)))
    threads = options.get("threads_per_actor") or int(cpus) or 1
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(_CaptureActor, fn_constructor_args=(factory, capture, threads),
                        batch_size=1, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus, num_gpus=gpus or None)
    rows = iter(ds.iter_rows())
    for want in keys:
        row = next(rows, None)
        if row is None or int(row["k"]) != want:
            raise RayExtractError(f"Ray returned {'no shard' if row is None else 'shard ' + str(row['k'])} where shard "
                                  f"{want} was expected; rerun the same command to resume from the shards written.")
        tensors = load_bytes(bytes(row["tensors"]))
        yield want, tensors["acts"], tensors.get("lengths")
