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

from liedetect.errors import DataError
from liedetect.scoring.calibration import Calibration, Metrics, calibrate, evaluate, message_rows
from liedetect.scoring.plan import plan_batches
from liedetect.scoring.render import Encoding, encode_all
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
        return "\n".join(lines)

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


def _settings(scorer_layer: int, hook: str, probe: Any, model: Any, roles, fmt, aggregate, too_long) -> Dict[str, Any]:
    from liedetect.models import model_id

    direction = getattr(probe, "coef_", None)
    if direction is None:
        direction = getattr(probe, "direction_", None)
    digest = hashlib.sha256(np.asarray(torch.as_tensor(direction).float().cpu().numpy()).tobytes()).hexdigest()[:16] \
        if direction is not None else "unknown"
    return {"model_id": model_id(model), "layer": scorer_layer, "hook": hook, "probe_sha": digest,
            "roles": list(roles), "format": fmt, "aggregate": aggregate, "too_long": too_long}


def run_scoring(encs: Sequence[Encoding], runner: BatchRunner, out: Optional[ScoreFile], batch_size: int,
                max_batch_tokens: int, progress: bool = True, label: str = "scoring") -> Tuple[List[Dict[str, Any]], int, int]:
    """Score encodings in the fixed batch plan, skipping finished ids; returns (records in plan order, new, tokens)."""
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
                      progress: bool = True) -> ScoringResult:
    """Score every transcript with `probe`, stream records to `out`, calibrate on `control`, evaluate on labels."""
    t0 = time.perf_counter()
    data = as_transcript_set(transcripts, strict)
    scorer = Scorer(model, probe, layer, hook, aggregate)
    settings = _settings(scorer.layer, scorer.hook, probe, model, roles, fmt, aggregate, too_long)
    max_len = getattr(model.cfg, "n_ctx", None)
    tokenizer = model.tokenizer
    encs = encode_all(tokenizer, data, roles, fmt, max_len, too_long, strict)
    if not encs:
        raise DataError(f"No transcript in {data.source or 'the input'} could be scored ({len(data.problems)} lines skipped).")
    if engine == "local":
        runner = local_runner(scorer)
    elif engine == "ray":
        from liedetect.scoring.ray_engine import ray_runner

        runner = ray_runner(model, probe, scorer.layer, scorer.hook, aggregate, **(ray_options or {}))
    else:
        raise DataError(f"Unknown engine {engine!r}; use local or ray.")
    sink = ScoreFile(out, resume=resume, settings=settings) if out is not None else None
    try:
        n_before = len(sink.done) if sink else 0
        records, n_new, tokens = run_scoring(encs, runner, sink, batch_size, max_batch_tokens, progress)
    finally:
        if sink is not None:
            sink.close()
    calibration = None
    rows = message_rows(records, aggregate)
    if control is not None:
        cdata = as_transcript_set(control, strict)
        cenc = encode_all(tokenizer, cdata, roles, fmt, max_len, too_long, strict)
        csink = ScoreFile(Path(out).with_suffix(".control.jsonl"), resume=resume, settings=settings) if out else None
        try:
            crecords, _, ctokens = run_scoring(cenc, local_runner(scorer) if engine == "local" else runner, csink,
                                               batch_size, max_batch_tokens, progress, "control")
        finally:
            if csink is not None:
                csink.close()
        tokens += ctokens
        calibration = calibrate(message_rows(crecords, aggregate), fpr, "control")
    elif any(r["label"] == 1 for r in rows):
        calibration = calibrate([r for r in rows if r["label"] == 1], fpr, "labelled honest (in-sample)")
    metrics = evaluate(rows, calibration.threshold if calibration else None)
    return ScoringResult(out=str(out) if out else None, records=records, problems=list(data.problems),
                         calibration=calibration, metrics=metrics, n_new=n_new,
                         n_resumed=min(n_before, len(records)), tokens=tokens,
                         seconds=time.perf_counter() - t0, settings=settings)
