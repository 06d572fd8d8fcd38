"""`liedetect detector ...` (train, calibrate, show, examples) and `liedetect report` (rebuild the HTML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from liedetect.cli.common import BosOpt, DeviceOpt, DtypeOpt, ModelOpt, QuietOpt, console, err_console, friendly_errors

detector_app = typer.Typer(no_args_is_help=True, help="Train, calibrate and inspect a deception detector (a folder).")


def warn(message: str) -> None:
    """One yellow sentence on stderr."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def warn_unknown_tokens(model: Any, texts: Any, what: str) -> None:
    """Warn when more than 5% of the tokens of `texts` (strings or a TranscriptSet) are the tokenizer's unknown token."""
    from liedetect.checks import unknown_token_rate

    if model is None:
        return
    if hasattr(texts, "transcripts"):
        texts = [m.content for t in texts.transcripts for m in t.messages]
    rate = unknown_token_rate(model.tokenizer, list(texts))
    if rate > 0.05:
        warn(f"{rate:.0%} of the tokens of {what} are unknown to this model's tokenizer, so its numbers say little "
             f"about the text; use data in the model's vocabulary (the organism knows only its own world).")


def require(value: Any, message: str) -> None:
    """Raise DataError(message) unless `value` is set."""
    if not value:
        from liedetect.errors import DataError

        raise DataError(message)


def warn_data(method: Optional[str] = None, template: str = "true-false", meta: Optional[dict] = None, dataset: Any = None,
              name: str = "") -> None:
    """Warn about an option the method ignores (--template for single-statement methods) and about evaluating
    on the very data a probe was trained on (its recorded fingerprint)."""
    if method is not None:
        import probes

        if not probes.is_paired(method) and template != "true-false":
            warn(f"--template is ignored by {method}, which reads each statement alone; it applies to lat and ccs.")
    if dataset is not None:
        from liedetect.checks import same_training_data

        if same_training_data(meta or {}, dataset.fingerprint()):
            warn(f"{name} is the data this probe was trained on, so these numbers are training metrics, not held-out ones.")


def score_with_detector(detector: Any, data: Any, name: str, device: str = "auto", dtype: Optional[str] = None,
                        control: Any = None, fpr: float = 0.01, **kwargs: Any) -> Any:
    """`liedetect score --detector`: load the detector and its model, warn, score (threshold from the detector
    unless a control set is given)."""
    from liedetect.detector import Detector
    from liedetect.models import load_model

    det = detector if isinstance(detector, Detector) else Detector.load(detector)
    bridge = load_model(det.model_spec, device=device, dtype=dtype)
    warn_unknown_tokens(bridge, data, name)
    result = det.score(bridge, data, control=control, fpr=fpr if control is not None else None, **kwargs)
    for w in det.warnings():
        warn(w)
    return result


@detector_app.command("train")
@friendly_errors
def train(data: str = typer.Argument(..., help="Statements (CSV statement,label or builtin:NAME) or labelled chats (.jsonl)."),
          out: Path = typer.Option(..., "--out", "-o", help="Detector folder to write."),
          model: str = ModelOpt,
          method: str = typer.Option("lr", help="lr, mass-mean, lat, ccs, ... (lat/ccs read contrast pairs of statements)."),
          layer: Optional[str] = typer.Option(None, "--layer", "-l", help="The layer to read, or several ('12-20', '6,12,18') to choose one on a validation split of DATA (default: all)."),
          hook: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post or out."),
          fmt: str = typer.Option("auto", "--format", help="How chats are rendered: auto (chat template, else bare text), chat, plain or text."),
          template: str = typer.Option("true-false", help="Contrast-pair template (lat, ccs only)."),
          roles: str = typer.Option("assistant", help="Comma-separated roles whose messages are read."),
          aggregate: str = typer.Option("mean", help="Message score from its token scores: mean, max or last."),
          limit: Optional[int] = typer.Option(None, help="Use a seeded, balanced sample of this many statements."),
          seed: int = typer.Option(0),
          system_prompt: str = typer.Option("template", "--system-prompt",
                                            help="template: a chat template's default system prompt is added to chats "
                                                 "that bring none, as the template writes it; none: never added. "
                                                 "Recorded in the detector, applied alike when it scores."),
          device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt, bos: str = BosOpt,
          quiet: bool = QuietOpt) -> None:
    """Train a detector on statements, contrast pairs or labelled chats, and save it as a folder."""
    import probes
    from liedetect.artifacts import check_artifact_target
    from liedetect.detector import DETECTOR_FILES, Detector, load_training_data
    from liedetect.errors import OptionError
    from liedetect.models import load_model
    from liedetect.options import check_choice, input_paths
    from liedetect.paths import check_outputs, check_transcripts_encodable
    from liedetect.scoring.render import FORMATS, SYSTEM_PROMPTS
    from liedetect.scoring.scorer import AGGREGATES

    # one preflight: options, inputs, the output folder, before any model loads
    paired = probes.is_paired(method)  # an unknown method fails before the model loads
    role_list = tuple(r.strip() for r in roles.split(",") if r.strip())
    if paired and role_list != ("assistant",):
        raise OptionError(f"{method} reads contrast pairs of statements, so --roles {roles} does not apply to it; "
                          f"leave --roles out.")
    if limit is not None and str(data).endswith(".jsonl"):
        raise OptionError("--limit samples statements (CSV or builtin:NAME); it does not apply to chats (.jsonl): "
                          "leave it out or shorten the file.")
    check_choice(aggregate, AGGREGATES, "--aggregate")
    check_choice(fmt, FORMATS, "--format")
    check_choice(system_prompt, SYSTEM_PROMPTS, "--system-prompt")
    warn_data(method=method, template=template)
    check_outputs([out], input_paths(data, model), folder=[True])
    check_artifact_target(out, DETECTOR_FILES, "a detector")
    src = load_training_data(data, limit=limit, seed=seed)
    if src["kind"] == "transcripts":
        check_transcripts_encodable(_Named(src["transcripts"], data))
    bridge = load_model(model, device=device, dtype=dtype, bos=bos)
    texts = list(src["dataset"].statements) if src["kind"] == "statements" else \
        [m.content for t in src["transcripts"] for m in t.messages]
    warn_unknown_tokens(bridge, texts, data)
    det = Detector.train(bridge, src["dataset"] if src["kind"] == "statements" else src["transcripts"], method=method,
                         layer=layer, hook=hook, fmt=fmt, template=template, aggregate=aggregate, seed=seed,
                         roles=role_list, progress=not quiet, system_prompt=system_prompt)
    det.training["data"] = data
    path = det.save(out)
    console.print(det.summary(), highlight=False, soft_wrap=True)
    console.print(f"detector -> {path}")


class _Named:
    """Transcripts with the file they came from (for messages that name it)."""

    def __init__(self, transcripts: Any, source: Any) -> None:
        self.transcripts, self.source = transcripts, str(source)


def check_detector_options(detector: Path, probe: Optional[Path] = None, model: Optional[str] = None,
                           **given: Any) -> Any:
    """The detector (loaded and checked) after refusing options that contradict it: --probe beside --detector,
    a --model other than the detector's, and a --layer, --hook, --roles, --aggregate or --format it does not use
    (`given`: option name -> (value, the option's default))."""
    from liedetect.detector import Detector
    from liedetect.errors import OptionError

    if probe is not None:
        raise OptionError("--probe and --detector both say what to score with; pass one (the detector holds its own "
                          "probe).")
    det = Detector.load(detector)
    if model is not None and model != det.model_spec and not _same_path(model, det.model_spec):
        raise OptionError(f"--model {model} contradicts the detector, which reads {det.model_spec!r} "
                          f"({detector}/detector.json); leave --model out: the detector loads its own model.")
    mine = {"layer": det.layer, "hook": det.hook, "roles": ",".join(det.roles), "aggregate": det.aggregate,
            "format": det.fmt}
    for name, (value, default) in given.items():
        if value is not None and value != default and str(value) != str(mine[name]):
            raise OptionError(f"--{name} {value} contradicts the detector, which uses {mine[name]!r}; leave --{name} "
                              f"out (the detector applies its probe the way it was trained).")
    return det


def _chats_file(path: Path) -> bool:
    """Whether `path` is missing, empty, or a JSONL whose first line is a chat ({"messages": [...]})."""
    if not path.is_file() or path.stat().st_size == 0:
        return True
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    try:
        doc = json.loads(first)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("messages"), list)


def _same_path(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


@detector_app.command("calibrate")
@friendly_errors
def calibrate(detector: Path = typer.Argument(..., help="A detector folder (from `liedetect detector train`)."),
              control: Path = typer.Option(..., "--control", help="Honest control chats (.jsonl) that fix the threshold."),
              fpr: float = typer.Option(0.01, help="False-positive rate on the control messages."),
              device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt,
              quiet: bool = QuietOpt) -> None:
    """Set the detector's threshold at a false-positive rate on honest control chats (written into the folder)."""
    from liedetect.artifacts import check_artifact_target
    from liedetect.detector import DETECTOR_FILES, Detector, read_control
    from liedetect.models import load_model
    from liedetect.options import input_paths
    from liedetect.paths import check_outputs
    from liedetect.scoring.calibration import check_fpr

    check_fpr(fpr)
    det = Detector.load(detector)
    cdata = read_control(control)
    check_outputs([detector], input_paths(control), folder=[True])
    check_artifact_target(detector, DETECTOR_FILES, "a detector")  # rewritten whole: nothing else may live there
    bridge = load_model(det.model_spec, device=device, dtype=dtype)
    det.calibrate(bridge, cdata, fpr=fpr, progress=not quiet)
    det.calibration["control"] = str(control)
    det.save(detector)
    for w in det.warnings():
        warn(w)
    console.print(det.summary(), highlight=False, soft_wrap=True)


@detector_app.command("show")
@friendly_errors
def show(detector: Path = typer.Argument(..., help="A detector folder."),
         as_json: bool = typer.Option(False, "--json", help="Print detector.json (machine-readable).")) -> None:
    """Print what a detector reads, how it was trained and its threshold."""
    from liedetect.detector import Detector

    det = Detector.load(detector)
    if as_json:
        from liedetect.cli.common import print_json

        return print_json(det.to_dict())  # always valid JSON (NaN would be null)
    console.print(det.summary(), highlight=False, soft_wrap=True)
    for w in det.warnings():
        warn(w)


@detector_app.command("examples")
@friendly_errors
def examples(out: Path = typer.Option(..., "--out", "-o", help="Folder for train.jsonl, control.jsonl and test.jsonl."),
             kind: str = typer.Option("capitals", help="capitals or arithmetic (any chat model), or organism (answered by the organism)."),
             n: int = typer.Option(200, min=10, help="Chats per file."),
             seed: int = typer.Option(0)) -> None:
    """Write small labelled example chats (generated by code) to try a detector on."""
    from liedetect.errors import OutputPathError
    from liedetect.example_chats import KINDS, write_examples
    from liedetect.options import check_choice
    from liedetect.paths import check_outputs

    check_choice(kind, KINDS, "--kind")
    files = [out / f"{name}.jsonl" for name in ("train", "control", "test")]
    check_outputs([out, *files], folder=[True, False, False, False])
    for f in files:  # earlier example chats may be replaced; anything else there (a probe, a CSV) is kept
        if not _chats_file(f):
            raise OutputPathError(f"{f} exists and is not a file of example chats; choose another --out or delete it "
                                  f"first.")
    paths = write_examples(out, kind, n=n, seed=seed)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


@detector_app.command("run")
@friendly_errors
def run(config: Path = typer.Argument(..., help="An experiment config (YAML: model, train, control, eval, method, layers, ...)."),
        quiet: bool = QuietOpt) -> None:
    """Train, calibrate and evaluate a detector as a YAML config says; write one results table (CSV + JSON)."""
    from liedetect.cli.common import print_table
    from liedetect.configs import run_config

    rows, out = run_config(config, progress=not quiet, with_out=True)
    print_table("results", rows)
    console.print(f"results -> {out / 'results.csv'}")


@friendly_errors
def report(scores: Path = typer.Argument(..., help="A scores JSONL written by `liedetect score`."),
           out: Path = typer.Option(..., "--out", "-o", help="The HTML report to write (PNG plots go next to it)."),
           title: Optional[str] = typer.Option(None, help="Page title (default: the scores file's name).")) -> None:
    """Rebuild the HTML report from a scores file, without rescoring (reads SCORES.summary.json when present)."""
    from liedetect.report import rebuild_report

    path, plots = rebuild_report(scores, out, title=title)
    console.print(f"report -> {path} (plots: {', '.join(p.name for p in plots)})")
