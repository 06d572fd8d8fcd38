"""A deception detector: what a user trains once and applies many times, saved as one folder.

The folder holds ``probe.safetensors`` + ``probe.json`` (the probe, ``probes`` format) and ``detector.json``:
model id (and the spec ``load_model`` takes), layer, hook, which tokens are read and how a message score is
aggregated from them, prompt format, roles, BOS policy, the training data's fingerprint and, once calibrated,
the threshold with the control set's sha256 and size. No pickles.

Training positions equal scoring positions: a detector trained on statements reads every token of each
statement rendered as an assistant message (``fmt``), exactly the tokens ``score`` reads in a chat; contrast
methods (lat, ccs) read the last token of each statement completed both ways (``template``). Scores follow
``liedetect.scoring``: higher = more suspicious.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

import probes
from liedetect.errors import CheckpointError, DataError, ProbeMismatchError
from liedetect.probe_io import read_probe
from probes.selection import check_groups, holdout_groups, splits, validate_layers
from probes.validation import read_format_json

FORMAT = "liedetect-detector"
FORMAT_VERSION = 1
DETECTOR_JSON = "detector.json"
PROBE_NAME = "probe"
DETECTOR_FILES = (DETECTOR_JSON, PROBE_NAME + ".json", PROBE_NAME + ".safetensors")

__all__ = ["Detector", "transcripts_fingerprint", "is_detector", "load_training_data", "read_control"]


def transcripts_fingerprint(transcripts: Sequence[Any]) -> str:
    """sha256 of the transcripts' ids, labels, roles, contents and message labels (order kept)."""
    items = [{"id": t.id, "label": t.label, "messages": [[m.role, m.content, m.label] for m in t.messages]}
             for t in transcripts]
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def is_detector(path: Union[str, Path]) -> bool:
    """Whether `path` is a detector folder."""
    return (Path(path) / DETECTOR_JSON).exists()


def load_training_data(data: Any, limit: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    """What `data` is: {'kind': 'transcripts', 'transcripts': [...]} for JSONL chats, else
    {'kind': 'statements', 'dataset': StatementDataset} for CSV / builtin:NAME / a StatementDataset."""
    from liedetect.datasets import StatementDataset, load_dataset
    from liedetect.scoring.transcripts import TranscriptSet, load_transcripts

    if isinstance(data, StatementDataset):
        return {"kind": "statements", "dataset": data, "name": data.name}
    if isinstance(data, TranscriptSet):
        return {"kind": "transcripts", "transcripts": list(data.transcripts), "name": data.source}
    if isinstance(data, (list, tuple)):
        return {"kind": "transcripts", "transcripts": list(data), "name": "memory"}
    text = str(data)
    from liedetect.datasets import is_transcript_builtin

    if text.endswith((".jsonl", ".json")) or is_transcript_builtin(text):  # chats (an Apollo .json, a chat built-in)
        tset = load_transcripts(text, strict=True)
        return {"kind": "transcripts", "transcripts": tset.transcripts, "name": Path(text).name}
    return {"kind": "statements", "dataset": load_dataset(text, n=limit, seed=seed), "name": text}


def read_control(control: Any) -> Any:
    """An honest control set checked as `score --control` checks it: readable, encodable, no deceptive row."""
    from liedetect.paths import check_transcripts_encodable
    from liedetect.scoring.run import check_control
    from liedetect.scoring.transcripts import as_transcript_set

    return check_control(check_transcripts_encodable(as_transcript_set(control, strict=False)))


def _statement_transcripts(dataset: Any) -> List[Any]:
    from liedetect.scoring.transcripts import Message, Transcript

    return [Transcript(id=f"s-{i}", messages=[Message("assistant", s)], label=int(y))
            for i, (s, y) in enumerate(zip(dataset.statements, dataset.labels))]


def _question(t: Any) -> str:
    """What a chat is about, for grouped validation: its first message when that is not the scored answer."""
    first = t.messages[0]
    return first.content if len(t.messages) > 1 else t.id


def _message_auroc(scores: np.ndarray, labels: np.ndarray, owner: np.ndarray) -> float:
    """AUROC of deceptive (label 0) vs honest messages, message score = mean of its token scores."""
    from probes.metrics import auroc

    keys = np.unique(owner)
    s = np.array([scores[owner == k].mean() for k in keys])
    y_lie = np.array([1 - labels[owner == k][0] for k in keys])
    return float(auroc(y_lie, s)) if 0 < y_lie.sum() < len(y_lie) else float("nan")


@dataclass
class Detector:
    """A probe plus everything needed to apply it the way it was trained, and its calibration."""

    probe: Any
    model_id: str
    model_spec: str
    layer: int
    hook: str = "resid_post"
    method: str = "lr"
    fmt: str = "auto"
    roles: List[str] = field(default_factory=lambda: ["assistant"])
    aggregate: str = "mean"
    position: str = "every token of each scored message"
    bos: str = "auto"
    training: Dict[str, Any] = field(default_factory=dict)
    calibration: Optional[Dict[str, Any]] = None
    system_prompt: str = "template"  # "none": a template's default system prompt is kept out of training and scoring

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, model: Any, data: Any, method: str = "lr", layer: Union[None, int, str] = None, fmt: str = "auto",
              hook: str = "resid_post", template: str = "true-false", roles: Sequence[str] = ("assistant",),
              aggregate: str = "mean", val_fraction: float = 0.2, seed: int = 0, limit: Optional[int] = None,
              params: Optional[Dict[str, Any]] = None, batch_size: int = 16, progress: bool = False,
              system_prompt: str = "template") -> "Detector":
        """Fit a detector on statements (CSV, builtin:NAME), contrast pairs (method lat/ccs) or labelled
        transcripts (JSONL). `layer`: one layer, or several / None (all) to choose one on a validation split of `data`."""
        from liedetect.models import model_id, resolve_layers

        if probes.is_paired(method) and roles != ("assistant",) and list(roles) != ["assistant"]:
            raise DataError(f"{method} reads contrast pairs of statements; roles do not apply to it.")
        from liedetect.bos import bos_policy

        if bos_policy(model) != "auto":
            raise DataError("A detector reads chats as the tokenizer and its chat template write them; load the model with --bos auto.")
        src = load_training_data(data, limit=limit, seed=seed)
        from liedetect.scoring.render import resolve_format

        fmt = resolve_format(model, fmt)  # decided now, so training and scoring render alike (warns on a fallback)
        # one layer: read it; several ('12-20', '6,12,18') or None (all): choose one on a validation split of `data`
        layers = resolve_layers(layer if layer is not None else "all", model.cfg.n_layers)
        if probes.is_paired(method):
            probe, chosen, info = cls._fit_pairs(model, src, method, layers, hook, template, val_fraction, seed, params,
                                                 batch_size, progress)
            position, used_fmt, used_roles = "last token of each statement completed both ways (template)", fmt, ["assistant"]
        else:
            probe, chosen, info = cls._fit_tokens(model, src, method, layers, hook, fmt, list(roles), val_fraction, seed,
                                                  params, batch_size, aggregate, system_prompt)
            position = "last scored token of each item" if aggregate == "last" else "every token of each scored message"
            used_fmt, used_roles = fmt, list(roles)
        from liedetect.bos import describe_bos

        # what the tokenizer did with plain statements (chats carry the tokens their template writes)
        bos = {k: v for k, v in describe_bos(model).items() if k in ("bos_token", "bos_added")}
        bos["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")  # the model's, during capture
        training = {"data": src["name"], "kind": src["kind"], "method": method, "seed": seed, **bos, **info}
        if not probes.is_paired(method) and template != "true-false":
            training["ignored"] = {"template": template}
        meta = {"model_id": model_id(model), "hook": hook, "layer": chosen, "position": position,
                "d_model": model.cfg.d_model, "bos": "auto", "dataset": src["name"],
                "dataset_fingerprint": info["fingerprint"], "template": template if probes.is_paired(method) else None}
        probe.meta_ = meta
        return cls(probe=probe, model_id=model_id(model), model_spec=str(getattr(model, "liedetect_spec", None) or
                   getattr(model, "liedetect_id", "organism")), layer=chosen, hook=hook, method=method, fmt=used_fmt,
                   roles=used_roles, aggregate=aggregate, position=position, training=training,
                   system_prompt=system_prompt)

    @staticmethod
    def _fit_tokens(model, src, method, layers, hook, fmt, roles, val_fraction, seed, params, batch_size, aggregate,
                    system_prompt="template"):
        from liedetect.scoring.scorer import training_activations

        if src["kind"] == "statements":
            src["dataset"].check_two_classes()
            transcripts = _statement_transcripts(src["dataset"])
            fingerprint = src["dataset"].fingerprint()
        else:
            transcripts = src["transcripts"]
            fingerprint = transcripts_fingerprint(transcripts)[:16]
        group_of = np.array([_question(t) for t in transcripts])  # what each chat is about: validation groups
        if len(layers) > 1:  # refused before any capture: a validation split needs whole groups on both sides
            check_groups(group_of, 3, "choosing a layer on held-out questions",
                         f"pass one --layer, or training chats that ask more distinct questions "
                         f"({src['name']} groups chats by their first message)")
        acts, labels, owner = training_activations(model, transcripts, layers, hook, roles, fmt, batch_size, system_prompt)
        keep = labels >= 0
        if aggregate == "last":  # train on the tokens the message score reads: each item's last scored token
            last = np.zeros(len(owner), dtype=bool)
            last[np.r_[np.flatnonzero(np.diff(owner)), len(owner) - 1]] = True
            keep &= last
        if len(set(labels[keep].tolist())) < 2:
            raise DataError(f"{src['name']} needs both honest (label 1) and deceptive (label 0) messages to train a detector.")
        choice = None
        if len(layers) > 1:
            # validation items are whole groups: chats that ask the same question (e.g. one country in several
            # phrasings) stay on one side, so the layer is not chosen on near-copies of training items
            _, held = holdout_groups(group_of[owner], val_fraction, seed, min_holdout=2)
            is_val, is_tr = held & keep, ~held & keep

            def val_auroc(layer: int) -> float:
                p = probes.make_probe(method, seed=seed, **(params or {})).fit(acts[layer][is_tr], labels[is_tr])
                s = -p.decision_function(acts[layer][is_val]).numpy()
                return _message_auroc(s, labels[is_val], owner[is_val])

            choice = validate_layers(layers, val_auroc, "message AUROC")
        chosen = layers[0] if choice is None else choice.layer
        probe = probes.make_probe(method, seed=seed, **(params or {})).fit(acts[chosen][keep], labels[keep])
        info = {"fingerprint": fingerprint, "n_items": len(transcripts), "n_tokens": int(keep.sum()),
                "layer_choice": "given" if choice is None else
                f"best validation AUROC ({val_fraction:.0%} of the training questions held out)",
                "selection": None if choice is None else choice.to_dict()}
        return probe, chosen, info

    @staticmethod
    def _fit_pairs(model, src, method, layers, hook, template, val_fraction, seed, params, batch_size, progress):
        from liedetect.training import capture_inputs, score_inputs

        if src["kind"] != "statements":
            raise DataError(f"{method} is a contrast-pair method: train it on statements (CSV or builtin:NAME), not transcripts.")
        dataset = src["dataset"]
        inputs = capture_inputs(model, dataset, layers, [method], "last", hook, template, batch_size, progress)
        y = inputs.labels
        choice = None
        if len(layers) > 1:
            tr, va = splits(y, val_fraction, None, seed)[0]

            def val_accuracy(layer: int) -> float:
                sl = inputs.layer_slice(layer)
                p = probes.make_probe(method, seed=seed, **(params or {})).fit(sl["pos"][tr], sl["neg"][tr], y[tr])
                return float(score_inputs(p, inputs, layer, va)["accuracy"])

            choice = validate_layers(layers, val_accuracy, "pair accuracy")
        chosen = layers[0] if choice is None else choice.layer
        sl = inputs.layer_slice(chosen)
        probe = probes.make_probe(method, seed=seed, **(params or {})).fit(sl["pos"], sl["neg"], y)
        info = {"fingerprint": dataset.fingerprint(), "n_items": len(y), "template": template,
                "layer_choice": "given" if choice is None else "best validation pair accuracy",
                "selection": None if choice is None else choice.to_dict()}
        return probe, chosen, info

    # ------------------------------------------------------------------ use

    def check_model(self, model: Any) -> None:
        """Raise ProbeMismatchError if `model` is not the one this detector was trained on."""
        from liedetect.probe_io import check_probe

        check_probe(self.probe, model, self.layer, self.hook, "this detector's probe")

    def _score_kwargs(self) -> Dict[str, Any]:
        return {"roles": list(self.roles), "aggregate": self.aggregate, "fmt": self.fmt, "layer": self.layer,
                "hook": self.hook, "system_prompt": self.system_prompt}

    def calibrate(self, model: Any, control: Any, fpr: float = 0.01, progress: bool = False) -> "Detector":
        """Set the threshold at `fpr` on honest control transcripts; record their sha256 and size."""
        from liedetect.scoring import calibrate, message_rows, score_transcripts
        from probes.metrics import threshold_at_fpr

        self.check_model(model)
        data = read_control(control)  # honest rows only, as `score --control`
        result = score_transcripts(model, self.probe, data, progress=progress, **self._score_kwargs())
        rows = message_rows(result.records, self.aggregate)
        order = {t.id: k for k, t in enumerate(data.transcripts)}
        cal = calibrate(rows, fpr, "control")
        tokens = [s for r in result.records for m in r["messages"] if m.get("scored") for s in m["scores"]]
        source = str(control) if isinstance(control, (str, Path)) else data.source or "memory"
        self.calibration = {"threshold": cal.threshold, "fpr": fpr, "n_control": cal.n_control,
                            "token_threshold": float(threshold_at_fpr(tokens, fpr)), "n_control_tokens": len(tokens),
                            "control": source, "control_sha256": transcripts_fingerprint(data.transcripts),
                            "n_skipped": len(data.problems),
                            # in the control's order, so AUROC against the control and other FPRs need no rescoring
                            "control_scores": [round(float(r["score"]), 6) for r in
                                               sorted(rows, key=lambda r: (order[r["id"]], r["message"]))]}
        return self

    def score(self, model: Any, transcripts: Any, out: Union[None, str, Path] = None, control: Any = None,
              fpr: Optional[float] = None, **kwargs: Any):
        """Score transcripts the way the detector was trained; the threshold is the calibrated one unless
        `control` is given (then it is set on that control set at `fpr`). Returns a ScoringResult."""
        from liedetect.scoring import Calibration, evaluate, message_rows, score_transcripts

        self.check_model(model)
        if fpr is None:
            fpr = (self.calibration or {}).get("fpr", 0.01)
        result = score_transcripts(model, self.probe, transcripts, out=out, control=control, fpr=fpr,
                                   **{**self._score_kwargs(), **kwargs})
        result.settings["detector"] = {"method": self.method, "training_data": self.training.get("data"),
                                       "training_fingerprint": self.training.get("fingerprint")}
        if control is None and self.calibration:
            c = self.calibration
            result.calibration = Calibration(threshold=c["threshold"], fpr=c["fpr"], n_control=c["n_control"],
                                             source=f"detector control {Path(str(c['control'])).name} "
                                                    f"(sha256 {c['control_sha256'][:12]})")
            result.settings["token_threshold"] = c.get("token_threshold")
            result.metrics = evaluate(message_rows(result.records, self.aggregate), c["threshold"])
        return result

    def warnings(self) -> List[str]:
        """One sentence per thing about this detector that makes its numbers less than they seem."""
        out = []
        c = self.calibration
        if c and c["n_control"] < 1.0 / c["fpr"]:
            out.append(f"The threshold comes from {c['n_control']} control messages, fewer than 1/FPR = "
                       f"{1 / c['fpr']:.0f}, so its {c['fpr']:.1%} false-positive rate is not measured; use more honest controls.")
        ignored = self.training.get("ignored")
        if ignored:
            out.append(f"{self.method} ignores " + ", ".join(f"--{k} ({v})" for k, v in ignored.items()) + ".")
        return out

    # ------------------------------------------------------------------ files

    def to_dict(self) -> Dict[str, Any]:
        """The detector.json content (the probe itself is stored next to it)."""
        d = {k: v for k, v in asdict(self).items() if k != "probe"}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d, "probe": PROBE_NAME}

    def save(self, path: Union[str, Path]) -> Path:
        """Write the detector folder (probe.safetensors, probe.json, detector.json, manifest.json) whole or not at
        all: into a temporary sibling folder, swapped into place; return the folder."""
        from liedetect.artifacts import check_artifact_target, write_artifact_dir
        from liedetect.schemas import check_detector
        from liedetect.scoring.render import FORMATS
        from liedetect.scoring.scorer import AGGREGATES

        folder = Path(path)
        check_artifact_target(folder, DETECTOR_FILES, "a detector")
        d = self.to_dict()
        check_detector(d, "this detector", FORMAT_VERSION, FORMATS, AGGREGATES)  # never save what load refuses
        doc = json.dumps(probes.base._jsonable(d), indent=1) + "\n"

        def write(tmp: Path) -> None:
            self.probe.save(tmp / PROBE_NAME, meta=self.probe.meta_)
            (tmp / DETECTOR_JSON).write_text(doc, encoding="utf-8")

        return write_artifact_dir(folder, write, FORMAT, FORMAT_VERSION)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Detector":
        """Read a detector folder written by `save`, after checking its manifest (when it has one: folders written
        before manifests still load) and detector.json's schema; a mix of two versions is one CheckpointError."""
        from liedetect.artifacts import verify_manifest
        from liedetect.schemas import check_detector
        from liedetect.scoring.render import FORMATS
        from liedetect.scoring.scorer import AGGREGATES

        folder = Path(path)
        meta_path = folder / DETECTOR_JSON
        if not meta_path.is_file():
            raise CheckpointError(f"{folder} is not a detector folder (no {DETECTOR_JSON}); make one with "
                                  f"`liedetect detector train DATA --out {folder}`.")
        verify_manifest(folder, FORMAT, FORMAT_VERSION)
        d = read_format_json(meta_path, FORMAT, CheckpointError, "detector", "retrain or re-save the detector")
        keep = check_detector(d, meta_path, FORMAT_VERSION, FORMATS, AGGREGATES)
        if d.get("system_prompt") in ("template", "none"):  # how chats were rendered (liedetect.scoring.render)
            keep["system_prompt"] = d["system_prompt"]
        probe = read_probe(folder / keep.pop("probe_file"))
        det = cls(probe=probe, **keep)
        if probe.meta_.get("model_id") not in (None, det.model_id):
            raise ProbeMismatchError(f"{folder}: detector.json names model {det.model_id!r} but its probe was trained "
                                     f"on {probe.meta_.get('model_id')!r}.")
        for key in ("layer", "hook"):
            if probe.meta_.get(key) not in (None, getattr(det, key)):
                raise CheckpointError(f"{folder}: detector.json says {key} {getattr(det, key)!r} but its probe records "
                                      f"{probe.meta_.get(key)!r}: the folder mixes files of two detectors; retrain it.")
        return det

    def summary(self) -> str:
        """A few lines: what it reads, how it was trained, its threshold."""
        t = self.training
        lines = [f"{self.method} detector for {self.model_id} (load with --model {self.model_spec}): layer {self.layer} "
                 f"{self.hook}, {self.position}, message score = {self.aggregate} of its token scores, format {self.fmt}, "
                 f"roles {','.join(self.roles)}, BOS {self.bos}",
                 f"trained on {t.get('data')} ({t.get('kind')}, {t.get('n_items')} items, fingerprint {t.get('fingerprint')}); "
                 f"layer {t.get('layer_choice', 'given')}"]
        c = self.calibration
        lines.append("not calibrated: run `liedetect detector calibrate DETECTOR --control HONEST.jsonl`" if not c else
                     f"threshold {c['threshold']:.4f} (messages) / {c['token_threshold']:.4f} (tokens) at {c['fpr']:.1%} FPR "
                     f"from {c['n_control']} control messages of {c['control']} (sha256 {c['control_sha256'][:12]})")
        return "\n".join(lines)
