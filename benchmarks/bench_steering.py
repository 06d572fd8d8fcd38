"""Generation speed with steering hooks vs without, in the same process (median of interleaved repeats).

    .venv/bin/python benchmarks/bench_steering.py [--repeats 7] [--tokens 32] [--out benchmarks/results/steering.json]

Models: the built-in organism (when its checkpoint is present) and a randomly initialised
GPT-2-small-shaped model (12 layers, d=768, real GPT-2 tokenizer, Hugging Face KV cache).
Steering: add alpha * d at the middle layer, at all positions and at generated positions only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from liedetect.steering import SteeringSpec, steer  # noqa: E402

GPT2_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "tokenizers" / "gpt2"  # GPT-2's tokenizer and config


def _generate(model, tokens, n_new: int) -> None:
    with torch.no_grad():
        model.generate(tokens, max_new_tokens=n_new, do_sample=False, verbose=False, use_past_kv_cache=True,
                       stop_at_eos=False, return_type="tokens")


def _hook_cost_us(model, specs: dict, calls: int = 2000) -> dict:
    """Microseconds the steering adds to one single-token forward: the hook function(s) plus the position pre-hook."""
    from liedetect.steering import Steering, _Tracker

    x = torch.randn(1, 1, model.cfg.d_model)
    ids = torch.zeros(1, 1, dtype=torch.long)
    out = {}
    for key, spec in specs.items():
        handle = Steering(model, spec)
        handle.tracker = _Tracker(None)
        fns = [handle._make_fn(layer) for layer in spec.layers] * len(spec.hooks)
        tracked = not (isinstance(spec.positions, str) and spec.positions == "all")
        t = time.perf_counter()
        for _ in range(calls):
            if tracked:
                handle.tracker.pre_hook(model, (ids,), {})
            for fn in fns:
                fn(x, None)
        out[key] = (time.perf_counter() - t) / calls * 1e6
    return out


def bench_model(name: str, model, prompt: str, n_new: int, repeats: int) -> dict:
    """Tokens/s of greedy generation unsteered and under two steering specs, interleaved per repeat."""
    tokens = model.to_tokens(prompt)
    d = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    layer = model.cfg.n_layers // 2
    specs = {
        "add_all_positions": SteeringSpec.from_tensor(d, [layer], alpha=4.0, scale="norm").calibrate(model),
        "add_generated_only": SteeringSpec.from_tensor(d, [layer], alpha=4.0, scale="norm", positions="generated").calibrate(model),
        "ablate_all_positions": SteeringSpec.from_tensor(d, [layer], op="ablate"),
    }
    _generate(model, tokens, 4)  # warm-up
    for spec in specs.values():
        with steer(model, spec):
            _generate(model, tokens, 4)
    times = {"unsteered": [], **{k: [] for k in specs}}
    order = ["unsteered", *specs]
    for i in range(repeats):
        for key in order[i % len(order):] + order[:i % len(order)]:  # rotate so no setting always runs first
            with steer(model, specs[key]) if key in specs else contextlib.nullcontext():
                t = time.perf_counter()
                _generate(model, tokens, n_new)
                times[key].append(time.perf_counter() - t)
    tps = {k: n_new / statistics.median(v) for k, v in times.items()}
    hook_us = _hook_cost_us(model, specs)
    result = {"model": name, "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model, "new_tokens": n_new,
              "prompt_tokens": int(tokens.shape[1]), "repeats": repeats, "steered_layer": layer,
              "tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
              "ratio_vs_unsteered": {k: round(tps[k] / tps["unsteered"], 4) for k in specs},
              "hook_cost_us_per_forward": {k: round(v, 1) for k, v in hook_us.items()},
              "ratio_from_hook_cost": {k: round(1 / (1 + hook_us[k] * 1e-6 * tps["unsteered"]), 5) for k in specs}}
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "steering.json"))
    parser.add_argument("--skip-gpt2", action="store_true")
    parser.add_argument("--organism", default=None, help="An organism checkpoint folder (default: the built-in one).")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = []
    try:
        from liedetect.organism.checkpoint_io import load_checkpoint

        organism = load_checkpoint(args.organism)
        world_prompt = organism.organism_world.prompts(1, split="heldout", persona="liar", seed=0)[0].text
        room = organism.cfg.n_ctx - organism.to_tokens(world_prompt).shape[1]
        results.append(bench_model("organism" if args.organism is None else f"organism@{args.organism}", organism, world_prompt, min(args.tokens, room), args.repeats))
    except Exception as exc:  # the organism checkpoint may be absent in a fresh checkout
        print(f"organism skipped: {type(exc).__name__}: {exc}")
    if not args.skip_gpt2:
        from liedetect.models import random_gpt2

        gpt2 = random_gpt2(GPT2_DIR, seed=0, device="cpu")
        results.append(bench_model("random-gpt2-small", gpt2, "The quick brown fox jumps over the lazy dog because",
                                   args.tokens, args.repeats))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_steering.py " + " ".join(sys.argv[1:])
    for r in results:
        r["command"] = command
    if out.exists():  # keep other models' rows from earlier runs; replace this run's models
        names = {r["model"] for r in results}
        results = [r for r in json.loads(out.read_text()).get("results", []) if r["model"] not in names] + results
    out.write_text(json.dumps({"benchmark": "steering generation speed", "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "machine": platform.machine(),
                               "note": "2 shared CPU cores under load from other jobs: end-to-end ratios carry a few % of noise; "
                                       "ratio_from_hook_cost is the steady-state estimate from the measured per-forward hook cost",
                               "results": results}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
