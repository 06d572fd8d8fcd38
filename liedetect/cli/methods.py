"""`liedetect iti ...`, `liedetect blackbox ...`, `liedetect tcav ...`: ITI, follow-up-question lie detection, TCAV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from liedetect.cli.common import DeviceOpt, DtypeOpt, ModelOpt, console, friendly_errors, print_table
from liedetect.errors import DataError

iti_app = typer.Typer(no_args_is_help=True, help="Inference-Time Intervention: per-head truth probes and a shift of the best heads.")
blackbox_app = typer.Typer(no_args_is_help=True, help="Black-box lie detection by follow-up yes/no questions.")
tcav_app = typer.Typer(no_args_is_help=True, help="TCAV scores: does the model's answer rise along a probe direction?")


def _finite(value: float, option: str) -> float:
    import math

    from liedetect.errors import OptionError

    if not math.isfinite(value):
        raise OptionError(f"{option} {value} is not a finite number.")
    return value


def _write_json(path: Path, doc: object) -> None:
    """Valid JSON (NaN as null), written whole or not at all."""
    from liedetect.artifacts import write_file_atomic
    from probes.base import _jsonable

    write_file_atomic(path, json.dumps(_jsonable(doc, other=str), indent=1) + "\n")


def _is_rows(doc: object) -> bool:
    return isinstance(doc, list) and all(isinstance(r, dict) and "alpha" in r for r in doc)


def _words(text: str, name: str) -> List[str]:
    words = [w for w in text.split(",") if w.strip()]
    if not words:
        raise DataError(f"Give at least one {name} word.")
    return words


# ---------------------------------------------------------------- ITI


@iti_app.command("fit")
@friendly_errors
def iti_fit(out: Path = typer.Option(..., "--out", "-o", help="Folder for the intervention (heads.json + tensors.safetensors)."),
            data: Path = typer.Option(..., "--data", "-d", help="TruthfulQA.csv (or a file with its columns)."),
            model: str = ModelOpt, k: int = typer.Option(16, "--k", min=1, help="How many heads to shift."),
            alpha: float = typer.Option(15.0, help="Shift in units of each head's std along its direction."),
            questions: Optional[int] = typer.Option(None, min=2, help="Use at most this many questions of the fitting fold (CPU budget)."),
            per_side: int = typer.Option(1, min=1, help="Correct and incorrect answers per question to probe on."),
            template: str = typer.Option("Q: {question}\nA:", help="Prompt before each answer; holds {question}."),
            seed: int = typer.Option(0, help="Seed of the two-fold split and the probe validation split."),
            heatmap: Optional[Path] = typer.Option(None, help="Also draw the per-head accuracy heatmap (png)."),
            device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt) -> None:
    """Probe every head on fold A of the questions (two-fold split by question), keep the top K, save the shift."""
    import numpy as np

    from liedetect.artifacts import check_artifact_target, check_replaceable
    from liedetect.iti import (ITI_FILES, answer_texts, capture_heads, fit_iti, load_truthfulqa, plot_head_accuracies,
                               two_fold)
    from liedetect.models import load_model
    from liedetect.options import input_paths
    from liedetect.paths import check_outputs

    if "{question}" not in template:
        raise DataError("The template must hold {question}.")
    _finite(alpha, "--alpha")
    outputs = [out] + ([heatmap] if heatmap else [])
    check_outputs(outputs, input_paths(data, model), folder=[True, False])
    check_artifact_target(out, ITI_FILES, "an ITI intervention")
    if heatmap:
        check_replaceable(heatmap, lambda p: p.suffix == ".png", "a heatmap (.png)")
    items = load_truthfulqa(data)
    fold_a, _ = two_fold(len(items), seed)
    train = [items[i] for i in fold_a[:questions]]
    bridge = load_model(model, device=device, dtype=dtype)
    texts, labels, groups = answer_texts(train, per_side=per_side, template=template)
    iti = fit_iti(capture_heads(bridge, texts), labels, groups, k=min(k, bridge.cfg.n_layers * bridge.cfg.n_heads), alpha=alpha, seed=seed)
    iti.meta.update({"model_spec": model, "data": str(data), "seed": seed, "fold": "A", "template": template})
    path = iti.save(out)
    acc = iti.accuracies
    print_table("top heads (validation accuracy)", [{"layer": l, "head": h, "accuracy": float(acc[l, h])} for l, h in iti.heads[:10]])
    console.print(f"median head accuracy {float(np.median(acc)):.3f}; intervention -> {path}")
    if heatmap:
        console.print(f"heatmap -> {plot_head_accuracies(acc, heatmap)}")


@iti_app.command("eval")
@friendly_errors
def iti_eval(intervention: Path = typer.Option(..., "--intervention", "-i", help="A folder written by `liedetect iti fit`."),
             data: Path = typer.Option(..., "--data", "-d", help="The TruthfulQA.csv the intervention was fitted on."),
             model: str = ModelOpt, alphas: str = typer.Option("0,5,15", help="Alphas to measure, comma-separated (0: no shift)."),
             questions: Optional[int] = typer.Option(None, min=1, help="Use at most this many held-out questions."),
             max_answers: Optional[int] = typer.Option(None, min=1, help="Keep the first few correct and incorrect answers per question."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table as JSON."),
             device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt) -> None:
    """MC1 / MC2 on the held-out fold (fold B of the fit's split) and the LM loss on neutral text, per alpha."""
    from liedetect.artifacts import check_replaceable, json_doc
    from liedetect.iti import ITIIntervention, lm_loss, load_truthfulqa, mc_scores, two_fold
    from liedetect.models import load_model
    from liedetect.options import input_paths, parse_floats
    from liedetect.paths import check_outputs
    from liedetect.steering.directions import NORM_TEXTS

    iti = ITIIntervention.load(intervention)
    alpha_list = parse_floats(alphas, "--alphas")
    if json_out:
        check_outputs([json_out], input_paths(intervention, data, model))
        check_replaceable(json_out, lambda p: _is_rows(json_doc(p)), "an `iti eval` table")
    items = load_truthfulqa(data)
    _, fold_b = two_fold(len(items), int(iti.meta.get("seed", 0)))
    test = [items[i] for i in fold_b[:questions]]
    template = iti.meta.get("template", "Q: {question}\nA:")
    bridge = load_model(model, device=device, dtype=dtype)
    rows = []
    for alpha in alpha_list:
        with iti.apply(bridge, alpha=alpha):
            rows.append({"alpha": alpha, "k": len(iti.heads), **mc_scores(bridge, test, template=template, max_answers=max_answers),
                         "lm_loss": lm_loss(bridge, list(NORM_TEXTS))})
    print_table("TruthfulQA held-out fold", rows)
    if json_out:
        _write_json(json_out, rows)


# ---------------------------------------------------------------- black box


@blackbox_app.command("fit")
@friendly_errors
def blackbox_fit(out: Path = typer.Option(..., "--out", "-o", help="Detector JSON to write."),
                 questions_file: Path = typer.Option(..., "--questions", help="Questions with answer and false_answer (pacchiardi questions_1000_all.json)."),
                 followups_file: Path = typer.Option(..., "--followups", help="Follow-up questions, column probe (pacchiardi probes.csv)."),
                 model: str = ModelOpt, n_questions: int = typer.Option(60, min=4, help="Questions to use (two transcripts each)."),
                 n_followups: Optional[int] = typer.Option(None, min=1, help="Use only the first few follow-up questions."),
                 test_fraction: float = typer.Option(0.5, min=0.1, max=0.9, help="Held-out share of the questions."),
                 yes: str = typer.Option("Yes, Yes,yes, yes", help="Yes-like answer words, comma-separated."),
                 no: str = typer.Option("No, No,no, no", help="No-like answer words, comma-separated."),
                 seed: int = typer.Option(0), device: str = DeviceOpt,
                 dtype: Optional[str] = DtypeOpt) -> None:
    """Fit on lies written into the assistant turn; report AUROC (95% bootstrap) and recall at 1% FPR on held-out questions."""
    import numpy as np

    from liedetect.artifacts import check_replaceable, json_object
    from liedetect.blackbox import (BLACKBOX_FORMAT, FollowupDetector, LocalLogProbs, detection_report,
                                    followup_features, inserted_transcripts, load_followups, load_questions,
                                    split_by_group)
    from liedetect.models import load_model
    from liedetect.options import input_paths
    from liedetect.paths import check_outputs

    yes_w, no_w = _words(yes, "yes"), _words(no, "no")
    check_outputs([out], input_paths(questions_file, followups_file, model))
    check_replaceable(out, lambda p: json_object(p).get("format") == BLACKBOX_FORMAT,
                      "a black-box detector")
    followups = load_followups(followups_file, limit=n_followups)
    qs = load_questions(questions_file)
    chosen = [qs[i] for i in np.random.default_rng(seed).permutation(len(qs))[:n_questions]]
    bridge = load_model(model, device=device, dtype=dtype)
    convs, lies, groups = inserted_transcripts(chosen)
    x = followup_features(LocalLogProbs(bridge, yes_w + no_w), convs, followups, yes=yes_w, no=no_w)
    train, test = split_by_group(groups, test_fraction, seed)
    det = FollowupDetector.fit(x[train], lies[train], followups)
    report = detection_report(lies[test], det.score(x[test]), n_boot=1000, seed=seed)
    print_table("held-out questions", [report])
    console.print(f"detector -> {det.save(out)}")


@blackbox_app.command("score")
@friendly_errors
def blackbox_score(transcripts: Path = typer.Argument(..., help="JSONL of chats ({messages:[...]}); the last assistant turn is the suspect."),
                   detector: Path = typer.Option(..., "--detector", help="A detector JSON from `liedetect blackbox fit`."),
                   model: str = ModelOpt, yes: str = typer.Option("Yes, Yes,yes, yes"), no: str = typer.Option("No, No,no, no"),
                   device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt) -> None:
    """P(lie) for each transcript, from the follow-up answers of the model."""
    from liedetect.blackbox import FollowupDetector, LocalLogProbs, followup_features
    from liedetect.models import load_model
    from liedetect.scoring.transcripts import load_transcripts

    from liedetect.paths import check_transcripts_encodable

    det = FollowupDetector.load(detector)
    yes_w, no_w = _words(yes, "yes"), _words(no, "no")
    data = check_transcripts_encodable(load_transcripts(transcripts, strict=True))
    if not data.transcripts:
        raise DataError(f"{transcripts} holds no transcripts.")
    convs = [[{"role": m.role, "content": m.content} for m in t.messages] for t in data.transcripts]
    bridge = load_model(model, device=device, dtype=dtype)
    x = followup_features(LocalLogProbs(bridge, yes_w + no_w), convs, det.followups, yes=yes_w, no=no_w)
    print_table("P(lie)", [{"id": t.id, "p_lie": float(p)} for t, p in zip(data.transcripts, det.score(x))])


# ---------------------------------------------------------------- TCAV


@tcav_app.command("score")
@friendly_errors
def tcav_score(probe: Path = typer.Option(..., "--probe", "-p", help="A saved probe (PATH.json): its direction and layer."),
               data: str = typer.Option(..., "--data", "-d", help="CSV/JSONL with statement(,label), or builtin:NAME."),
               model: str = ModelOpt, layer: Optional[int] = typer.Option(None, help="Layer (default: the probe's)."),
               template: str = typer.Option("{statement} This statement is", help="Prompt around each statement; holds {statement}."),
               answers: str = typer.Option(" True, False", help="The answer whose logit is read, and the one it is measured against."),
               n_random: int = typer.Option(50, min=2, help="Random directions to test against."),
               position: str = typer.Option("last", help="last (the answer position) or all (every token moved)."),
               limit: Optional[int] = typer.Option(200, help="Use at most this many statements."),
               seed: int = typer.Option(0), json_out: Optional[Path] = typer.Option(None, "--json"),
               device: str = DeviceOpt, dtype: Optional[str] = DtypeOpt) -> None:
    """The fraction of inputs whose answer logit rises along the probe direction, vs random directions."""
    from liedetect.artifacts import check_replaceable, json_object
    from liedetect.datasets import load_dataset
    from liedetect.models import load_model
    from liedetect.options import check_choice, input_paths, probe_files
    from liedetect.paths import check_encodable, check_outputs
    from liedetect.steering.directions import direction_from_probe
    from liedetect.tcav import POSITIONS, tcav

    pair = answers.split(",")
    if len(pair) != 2:
        raise DataError(f"--answers takes two words separated by a comma, got {answers!r}.")
    if "{statement}" not in template:
        raise DataError("The template must hold {statement}.")
    check_choice(position, POSITIONS, "--position")
    if json_out:
        check_outputs([json_out], input_paths(data, model, *probe_files(probe)))
        check_replaceable(json_out, lambda p: "random_scores" in json_object(p),
                          "a `tcav score` result")
    direction, meta = direction_from_probe(probe)
    at = layer if layer is not None else meta.get("layer")
    if at is None:
        raise DataError("The probe records no layer; pass --layer.")
    dataset = load_dataset(data, n=limit, seed=seed)
    check_encodable(enumerate(dataset.statements, start=1), data, "statement")
    texts = [template.format(statement=s) for s in dataset.statements]
    bridge = load_model(model, device=device, dtype=dtype)
    result = tcav(bridge, texts, direction, int(at), (pair[0], pair[1]), n_random=n_random, seed=seed, position=position)
    row = result.to_dict()
    print_table(f"TCAV at layer {at}", [{k: row[k] for k in ("score", "random_mean", "random_std", "p_value_ttest", "p_value_rank",
                                                            "p_value_magnitude", "significant", "n_inputs")}])
    if json_out:
        _write_json(json_out, row)
