"""The GPU check, one call: random weights at Llama-3.1-8B's shape in bfloat16, measured end to end; one JSON out.

    python benchmarks/gpu_check.py --out $OUT/gpu_check.json                    # one H100: under 8 minutes
    python benchmarks/gpu_check.py --device cpu --shape 1b --batch 2 --tokens 64 --new-tokens 4   # proves it runs

Measured (medians of --repeats, CUDA synchronised): capture tokens/s of liedetect.extract (one middle layer, and
all layers) against the bare transformers forward of the same weights (a plain copy, same eager attention:
cut after that layer, and with output_hidden_states), and the all-layer rate against the bf16 roofline
(--peak-tflops, H100 SXM dense bf16 989; a forward costs 2 x parameters FLOPs per token); scoring tokens/s
(liedetect.scoring.score_transcripts with a probe on random activations); greedy generation tokens/s steered
(`add` at the middle layer) and unsteered; peak GPU memory; and `pytest -m gpu` when any test carries that marker.
Needs only the locked packages (torch, transformers, transformer_lens, the liedetect tree). The tokenizer is
GPT-2's from ../shared when present, else the organism's small word-level one shipped in the package (the ids
do not matter to random weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import shapes  # noqa: E402

ORGANISM_TOKENIZER = ROOT / "liedetect" / "organism" / "checkpoint"


def load_tokenizer(folder: str):
    """GPT-2's tokenizer when its folder exists, else the organism's (a fast tokenizer with a pad token)."""
    if folder and (Path(folder) / "vocab.json").exists():
        return shapes.tokenizer(Path(folder))
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(ORGANISM_TOKENIZER / "tokenizer.json"), pad_token="<pad>",
                                  eos_token="<eos>", unk_token="<unk>", bos_token="<bos>")
    tok.model_max_length = 10**9
    return tok


def make_texts(tok, n: int, tokens: int):
    """n texts of about `tokens` tokens each, decoded from a stream of the tokenizer's own ids."""
    vocab = [i for i in range(len(tok)) if i not in set(tok.all_special_ids)]
    gen = torch.Generator().manual_seed(0)
    texts = []
    for _ in range(n):
        ids = [vocab[int(k)] for k in torch.randint(len(vocab), (tokens,), generator=gen)]
        texts.append(tok.decode(ids))
    return texts


def timed(fn, device: str, repeats: int):
    """Median wall seconds of fn() over `repeats` runs after one warm-up, synchronising CUDA around each."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def capture(bridge, bare, tok, args, result) -> None:
    from liedetect.activations import encode, extract, pad_batch

    texts = make_texts(tok, args.batch, args.tokens)
    enc = encode(bridge, texts)  # extract encodes the same texts to the same ids
    ids, mask = pad_batch(enc.ids, tok.pad_token_id)
    ids, mask = ids.to(args.device), mask.to(args.device)
    n_tok = int(mask.sum())
    layers = bridge.cfg.n_layers
    mid = layers // 2

    def bare_stop():
        full = bare.model.layers
        bare.model.layers = torch.nn.ModuleList(list(full)[:mid + 1])
        try:
            with torch.inference_mode():
                bare.model(input_ids=ids, attention_mask=mask)
        finally:
            bare.model.layers = full

    def bare_hidden():
        with torch.inference_mode():
            bare(input_ids=ids, attention_mask=mask, output_hidden_states=True)

    modes = {"bare_stop_mid": bare_stop,
             "extract_mid": lambda: extract(bridge, texts, layers=[mid], batch_size=args.batch, progress=False),
             "bare_hidden": bare_hidden,
             "extract_all": lambda: extract(bridge, texts, layers="all", batch_size=args.batch, progress=False)}
    seconds = {name: timed(fn, args.device, args.repeats) for name, fn in modes.items()}
    med = {k: v[0] for k, v in seconds.items()}
    flops_per_token = 2 * result["parameters"]
    roofline = args.peak_tflops * 1e12 / flops_per_token
    result["capture"] = {
        "texts": args.batch, "tokens": n_tok, "middle_layer": mid, "seconds": {k: v[1] for k, v in seconds.items()},
        "tokens_per_s": {k: n_tok / v for k, v in med.items()},
        "ratio_extract_mid_vs_bare_stop": med["extract_mid"] / med["bare_stop_mid"],
        "ratio_extract_all_vs_bare_hidden": med["extract_all"] / med["bare_hidden"],
        "roofline_tokens_per_s": roofline, "peak_tflops_assumed": args.peak_tflops,
        "extract_all_fraction_of_roofline": n_tok / med["extract_all"] / roofline,
    }


def scoring(bridge, tok, args, result) -> None:
    from probes import MassMeanProbe
    from liedetect.scoring import score_transcripts, transcript_from_obj

    d = bridge.cfg.d_model
    gen = torch.Generator().manual_seed(1)
    probe = MassMeanProbe().fit(torch.randn(40, d, generator=gen).numpy(), [0, 1] * 20)
    texts = make_texts(tok, args.batch * 2, args.tokens // 2)
    chats = [transcript_from_obj({"id": f"t{i}", "messages": [{"role": "user", "content": "Say something."},
                                                               {"role": "assistant", "content": t}]}, i)
             for i, t in enumerate(texts)]
    run = lambda: score_transcripts(bridge, probe, chats, layer=bridge.cfg.n_layers // 2, fmt="plain",  # noqa: E731
                                    batch_size=args.batch, progress=False)
    run()
    rates = []
    for _ in range(args.repeats):
        res = run()
        rates.append(res.tokens_per_s)
    result["scoring"] = {"transcripts": len(chats), "tokens_per_s": statistics.median(rates), "all": rates,
                         "note": "tokens/s as score_transcripts reports it (scored assistant tokens over wall time)"}


def generation(bridge, tok, args, result) -> None:
    from liedetect.steering import SteeringSpec, generate

    gen = torch.Generator().manual_seed(2)
    spec = SteeringSpec.from_tensor(torch.randn(bridge.cfg.d_model, generator=gen), layers=[bridge.cfg.n_layers // 2],
                                    alpha=4.0)
    prompt = make_texts(tok, 1, 32)[0]
    out = {}
    for name, which in (("unsteered", None), ("steered", spec)):
        def once():
            return generate(bridge, prompt, which, max_new_tokens=args.new_tokens)
        med, times = timed(once, args.device, args.repeats)
        out[name] = {"seconds": times, "tokens_per_s": args.new_tokens / med}
    out["ratio_steered_vs_unsteered_seconds"] = out["unsteered"]["tokens_per_s"] / out["steered"]["tokens_per_s"]
    out["note"] = "greedy, KV cache, batch 1, new tokens / seconds (an early EOS would make a rate look higher)"
    result["generation"] = out


def gpu_tests(result) -> None:
    marked = subprocess.run(["grep", "-rlE", r"mark\.gpu|pytestmark.*gpu", str(ROOT / "tests")],
                            capture_output=True, text=True).stdout.split()
    if not marked:
        result["pytest_gpu"] = {"ran": False, "why": "no test carries the gpu marker"}
        return
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", *marked],
                          capture_output=True, text=True, cwd=ROOT)
    result["pytest_gpu"] = {"ran": True, "returncode": proc.returncode, "tail": proc.stdout[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", choices=sorted(shapes.SHAPES), default="8b")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--tokenizer", default=str(shapes.GPT2_DIR))
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    tok = load_tokenizer(args.tokenizer)
    bridge, bare = shapes.bridge_and_bare(args.shape, torch.bfloat16, args.device, tok)
    result = {"benchmark": "gpu_check", "shape": args.shape, "dtype": "bfloat16", "device": args.device,
              "parameters": shapes.param_count(bare), "build_seconds": time.perf_counter() - t0,
              "torch": torch.__version__, "machine": platform.machine(),
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    steps = [("capture", lambda: capture(bridge, bare, tok, args, result)),
             ("scoring", lambda: scoring(bridge, tok, args, result)),
             ("generation", lambda: generation(bridge, tok, args, result))]
    for name, step in steps:
        start = time.perf_counter()
        try:
            step()
        except Exception as exc:  # one failing part must not lose the others' numbers
            result[name] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
        print(f"{name}: {time.perf_counter() - start:.1f}s", flush=True)
    if args.device.startswith("cuda"):
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["weights_gib_two_copies"] = 2 * sum(p.numel() * p.element_size() for p in bare.parameters()) / 2**30
        result["peak_gpu_memory_above_weights_gib"] = result["peak_gpu_memory_gib"] - result["weights_gib_two_copies"]
    if not args.skip_tests:
        gpu_tests(result)
    result["total_seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
