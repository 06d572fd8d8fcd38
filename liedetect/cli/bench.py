"""`liedetect bench CONFIG.yaml`: detector recipes x data sets against one control; one results table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from liedetect.cli.common import QuietOpt, console, friendly_errors


@friendly_errors
def bench(config: Path = typer.Argument(..., help="A bench config (YAML: out, control, datasets, recipes; see docs/benchmark.md)."),
          model: Optional[str] = typer.Option(None, "--model", "-m", help="Run every recipe on this model instead (e.g. organism)."),
          quiet: bool = QuietOpt) -> None:
    """Train each recipe's detector, calibrate it on the control, score every data set; write results_table.csv
    (Apollo's columns, 95% bootstrap intervals), scores.csv, ROC and score-distribution plots."""
    import warnings

    from liedetect.benchmarks.bench import read_bench_config, run_bench
    from liedetect.cli.common import print_table
    from liedetect.cli.detector import warn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = run_bench(config, model=model, progress=not quiet, echo=lambda s: console.print(s, highlight=False))
    for w in {str(w.message) for w in caught if issubclass(w.category, UserWarning)}:
        warn(w)
    for row in rows:
        if row.get("warnings"):
            warn(f"{row['recipe']} / {row['dataset']}: {row['warnings']}")
    keep = ("recipe", "dataset", "n_honest", "n_deceptive", "n_dropped", "auroc", "auroc_vs_control",
            "recall_1pct", "fpr_1pct", "recall_0_2pct", "fpr_0_2pct")
    print_table("results", [{k: r[k] for k in keep if k in r} for r in rows])
    console.print(f"results -> {Path(read_bench_config(config, model)['out']) / 'results_table.csv'}")
