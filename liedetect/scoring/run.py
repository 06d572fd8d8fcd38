"""A scoring run: encode, score in the batch plan (locally or on Ray), stream, resume, calibrate, evaluate."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from liedetect.errors import DataError, OutputPathError
from liedetect.scoring.calibration import Calibration, Metrics, calibrate, evaluate, message_rows
from liedetect.scoring.plan import plan_batches
from liedetect.scoring.render import Encoding, encode_all, resolve_format
from liedetect.scoring.scorer import Scorer
from liedetect.scoring.store import ScoreFile
from liedetect.scoring.transcripts import Problem, Transcript, TranscriptSet, as_transcript_set


@dataclass
class ScoringResult:
    """What a scoring run produced: where the scores are, what was skipped, calibration and metrics."""

    out: Optional[str]
    records: List[Dict[str, Any]]
    problems: List[Problem]
    calibration: Optional[Calibration]
    metrics: Optional[Metrics]
    n_new: int
    n_resumed: int
    tokens: int
    seconds: float
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Scored throughput of this run (all forwarded tokens per wall-clock second)."""
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{len(self.records)} transcripts scored ({self.n_new} now, {self.n_resumed} resumed), "
                 f"{len(self.problems)} line(s) skipped, {self.tokens_per_s:,.0f} tokens/s"]
        if self.calibration:
            lines.append(self.calibration.summary())
        if self.metrics and (self.metrics.n_honest or self.metrics.n_deceptive):
            lines.append(self.metrics.summary())
        lines.extend(f"warning: {w}" for w in self.warnings())
        return "\n".join(lines)

    def warnings(self) -> List[str]:
        """Sentences about this run that make its numbers less than they seem."""
        from liedetect.scoring.scorer import label_source_warning

        found = label_source_warning(self.records)
        return [found] if found else []

    def summary_rows(self) -> List[Dict[str, Any]]:
        """Per-group table rows: messages, mean score, fraction flagged."""
        if not self.metrics:
            return []
        return [{"group": k, **v} for k, v in self.metrics.by_group.items()]

    def to_dict(self) -> Dict[str, Any]:
        """Everything but the records, as plain JSON."""
        return {"out": self.out, "n_transcripts": len(self.records), "n_new": self.n_new, "n_resumed": self.n_resumed,
                "problems": [asdict(p) for p in self.problems], "tokens": self.tokens, "seconds": self.seconds,
                "tokens_per_s": self.tokens_per_s, "settings": self.settings,
                "calibration": asdict(self.calibration) if self.calibration else None,
                "metrics": asdict(self.metrics) if self.metrics else None}

    def save(self, path: Union[str, Path]) -> Path:
        """Write the summary (not the records) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


BatchRunner = Callable[[List[List[Encoding]]], Iterator[List[Dict[str, Any]]]]


def local_runner(scorer: Scorer) -> BatchRunner:
    """Score batches one after the other in this process."""
    def run(batches: List[List[Encoding]]) -> Iterator[List[Dict[str, Any]]]:
        for batch in batches:
            yield scorer.score(batch)
    return run


def _settings(scorer_layer: int, hook: str, probe: Any, model: Any, roles, fmt, aggregate, too_long,
              batch_size: int, max_batch_tokens: int, system_prompt: str = "template") -> Dict[str, Any]:
    from liedetect.models import model_id

    direction = getattr(probe, "coef_", None)
    if direction is None:
        direction = getattr(probe, "direction_", None)
    digest = hashlib.sha256(np.asarray(torch.as_tensor(direction).float().cpu().numpy()).tobytes()).hexdigest()[:16] \
        if direction is not None else "unknown"
    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    where = {} if param is None else {"device": param.device.type, "dtype": str(param.dtype).replace("torch.", "")}
    # the batch plan decides which transcripts share a padded forward, and so the last bits of their scores
    return {"model_id": model_id(model), "layer": scorer_layer, "hook": hook, "probe_sha": digest,
            "roles": list(roles), "fmt": fmt, "aggregate": aggregate, "too_long": too_long,
            "batch_size": batch_size, "max_batch_tokens": max_batch_tokens, **where,
            **({"system_prompt": system_prompt} if system_prompt != "template" else {})}


def run_scoring(encs: Sequence[Encoding], runner: BatchRunner, out: Optional[ScoreFile], batch_size: int,
                max_batch_tokens: int, progress: bool = True, label: str = "scoring",
                fingerprints: Optional[Dict[str, str]] = None) -> Tuple[List[Dict[str, Any]], int, int]:
    """Score encodings in the fixed batch plan, skipping finished ids; returns (records in plan order, new, tokens).
    With `fingerprints` (id -> fingerprint), each record carries its transcript's fingerprint for a later resume."""
    from liedetect.progress import progress_bar

    plan = plan_batches([len(e.ids) for e in encs], batch_size, max_batch_tokens)
    done = out.done if out is not None else {}
    todo = [b for b in plan if any(encs[i].transcript.id not in done for i in b)]
    n_new = tokens = 0
    fresh: Dict[str, Dict[str, Any]] = {}
    with progress_bar(label, total=len(encs), enabled=progress,
                      completed=len(encs) - sum(len(b) for b in todo)) as advance:
        for batch, records in zip(todo, runner([[encs[i] for i in b] for b in todo])):
            for i, rec in zip(batch, records):
                tokens += len(encs[i].ids)
                if rec["id"] in done:
                    continue
                if fingerprints is not None:
                    rec["fingerprint"] = fingerprints[rec["id"]]
                if out is not None:
                    out.write(rec)
                fresh[rec["id"]] = rec
                n_new += 1
            advance(len(batch))
    by_id = {**done, **fresh}
    ordered = [by_id[encs[i].transcript.id] for b in plan for i in b if encs[i].transcript.id in by_id]
    return ordered, n_new, tokens


def score_transcripts(model: Any, probe: Any, transcripts: Union[str, Path, TranscriptSet, Sequence[Transcript]],
                      out: Union[None, str, Path] = None, control: Union[None, str, Path, TranscriptSet, Sequence[Transcript]] = None,
                      fpr: float = 0.01, roles: Sequence[str] = ("assistant",), aggregate: str = "mean",
                      fmt: str = "auto", layer: Optional[int] = None, hook: Optional[str] = None,
                      batch_size: int = 16, max_batch_tokens: int = 16384, resume: bool = False, strict: bool = False,
                      too_long: str = "skip", engine: str = "local", ray_options: Optional[Dict[str, Any]] = None,
                      progress: bool = True, system_prompt: str = "template") -> ScoringResult:
    """Score every transcript with `probe`, stream records to `out`, calibrate on `control`, evaluate on labels.

    Everything is checked before `out` is touched: options, inputs, the control set, the output paths; one
    process writes an `out` at a time (`<out>.lock`)."""
    from liedetect.paths import OutputLock, check_outputs, check_transcripts_encodable
    from liedetect.scoring.calibration import check_fpr
    from liedetect.scoring.store import check_targets, score_outputs, settings_digest, transcript_fingerprint

    t0 = time.perf_counter()
    check_fpr(fpr)
    if engine not in ("local", "ray"):
        raise DataError(f"Unknown engine {engine!r}; use local or ray.")
    data = check_transcripts_encodable(as_transcript_set(transcripts, strict))
    cdata = None if control is None else check_control(check_transcripts_encodable(as_transcript_set(control, strict)))
    if out is not None:
        outputs = score_outputs(out)
        check_outputs(list(outputs.values()), [p for p in (transcripts, control) if isinstance(p, (str, Path))])
        check_targets(out, resume)
    scorer = Scorer(model, probe, layer, hook, aggregate)
    if fmt == "auto":
        resolve_format(model, fmt)  # warns once when the model has no chat template (the fallback keeps roles)
    settings = _settings(scorer.layer, scorer.hook, probe, model, roles, fmt, aggregate, too_long, batch_size,
                         max_batch_tokens, system_prompt)
    max_len = getattr(model.cfg, "n_ctx", None)
    tokenizer = model.tokenizer
    encs = encode_all(tokenizer, data, roles, fmt, max_len, too_long, strict, system_prompt)
    if not encs:
        raise DataError(f"No transcript in {data.source or 'the input'} could be scored ({len(data.problems)} lines skipped).")
    cenc = None
    if cdata is not None:
        cenc = encode_all(tokenizer, cdata, roles, fmt, max_len, too_long, strict, system_prompt)
        if not cenc:
            raise DataError(f"No transcript of the control set {cdata.source or ''} could be scored; it needs honest "
                            f"messages in the scored roles ({', '.join(roles)}).")
    sha = settings_digest(settings)
    prints = {e.transcript.id: transcript_fingerprint(e.transcript, sha) for e in encs}
    cprints = {e.transcript.id: transcript_fingerprint(e.transcript, sha) for e in cenc or []}
    if engine == "local":
        runner = local_runner(scorer)
    else:
        from liedetect.scoring.ray_engine import ray_runner

        runner = ray_runner(model, probe, scorer.layer, scorer.hook, aggregate, **(ray_options or {}))
    lock = OutputLock(out).acquire() if out is not None else None
    try:
        sink = ScoreFile(out, resume=resume, settings=settings, fingerprints=prints,
                         lines={e.transcript.id: e.transcript.line for e in encs}) if out is not None else None
        try:
            n_before = len(sink.done) if sink else 0
            records, n_new, tokens = run_scoring(encs, runner, sink, batch_size, max_batch_tokens, progress,
                                                 fingerprints=prints)
        finally:
            if sink is not None:
                sink.close()
        calibration = None
        rows = message_rows(records, aggregate)
        if cenc is not None:
            csink = ScoreFile(outputs["control"], resume=resume, settings=settings, fingerprints=cprints,
                              lines={e.transcript.id: e.transcript.line for e in cenc}) if out else None
            try:
                crecords, _, ctokens = run_scoring(cenc, local_runner(scorer) if engine == "local" else runner, csink,
                                                   batch_size, max_batch_tokens, progress, "control", fingerprints=cprints)
            finally:
                if csink is not None:
                    csink.close()
            tokens += ctokens
            calibration = calibrate(message_rows(crecords, aggregate), fpr, "control")
        elif any(r["label"] == 1 for r in rows):
            calibration = calibrate([r for r in rows if r["label"] == 1], fpr, "labelled honest (in-sample)")
    finally:
        if lock is not None:
            lock.release()
    metrics = evaluate(rows, calibration.threshold if calibration else None)
    return ScoringResult(out=str(out) if out else None, records=records, problems=list(data.problems),
                         calibration=calibration, metrics=metrics, n_new=n_new,
                         n_resumed=min(n_before, len(records)), tokens=tokens,
                         seconds=time.perf_counter() - t0, settings=settings)


def check_control(cdata: TranscriptSet) -> TranscriptSet:
    """A control set must hold honest transcripts only (labelled honest, or unlabelled), at least one."""
    if not cdata.transcripts:
        raise DataError(f"The control set {cdata.source or ''} holds no usable transcript ({len(cdata.problems)} lines "
                        f"skipped); it needs honest transcripts to set the threshold on.")
    lies = [t for t in cdata.transcripts if t.label == 0 or any(m.label == 0 for m in t.messages)]
    if lies:
        raise DataError(f"The control set {cdata.source or ''} has {len(lies)} transcript(s) labelled deceptive (first: "
                        f"{lies[0].id!r}, line {lies[0].line}); a threshold must be set on honest messages only, so "
                        f"remove them or pass an honest control set.")
    return cdata


def preflight(transcripts: Union[str, Path], probe: Union[None, str, Path], out: Union[str, Path], control: Union[None, str, Path] = None,
              html: Union[None, str, Path] = None, model: Optional[str] = None, fpr: float = 0.01,
              strict: bool = False, resume: bool = False, detector: Union[None, str, Path] = None,
              **choices: str) -> Tuple[TranscriptSet, Optional[TranscriptSet]]:
    """Everything a scoring run can check before a model loads: the FPR, the choices (aggregate, fmt, too_long,
    engine), the inputs, the control set, the probe's files (or the detector folder) and every output path
    (none may be an input); returns (transcripts, control set)."""
    from liedetect.options import check_choice, input_paths, probe_files
    from liedetect.paths import check_outputs, check_transcripts_encodable
    from liedetect.probe_io import validate_probe_files
    from liedetect.scoring.calibration import check_fpr
    from liedetect.scoring.render import FORMATS, TOO_LONG
    from liedetect.scoring.scorer import AGGREGATES
    from liedetect.scoring.store import check_targets, score_outputs
    from liedetect.scoring.transcripts import load_transcripts

    known = {"aggregate": AGGREGATES, "fmt": FORMATS, "too_long": TOO_LONG, "engine": ("local", "ray")}
    for name, value in choices.items():
        check_choice(value, known[name], "--" + {"fmt": "format"}.get(name, name).replace("_", "-"))
    check_fpr(fpr)
    outputs = list(score_outputs(out).values())
    if html is not None:
        html = Path(html)
        if not html.name or html.is_dir():
            raise OutputPathError(f"--html {html} is a folder; pass a file path such as report.html.")
        outputs += [html, html.with_name(html.stem + "_hist.png"), html.with_name(html.stem + "_roc.png")]
    probe_inputs = probe_files(probe) if probe is not None else []
    # every output path against every input first: it needs no input read
    check_outputs(outputs, input_paths(transcripts, control, model, detector, *probe_inputs))
    data = check_transcripts_encodable(load_transcripts(transcripts, strict=strict))
    if not data.transcripts:
        raise DataError(f"No transcript in {transcripts} could be read ({len(data.problems)} lines skipped); "
                        f"the first problem: {data.problems[0] if data.problems else 'the file is empty'}.")
    cdata = None if control is None else \
        check_control(check_transcripts_encodable(load_transcripts(control, strict=strict)))
    check_targets(out, resume)
    if probe is not None:
        validate_probe_files(probe)
    return data, cdata
