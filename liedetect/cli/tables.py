"""The sweep's tables: readable at 80 columns whatever the number of layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from probes.sweep import SweepResult


def _header(method: str) -> str:
    return method.replace("-", "-\n")  # narrow columns: mass-mean-iid fits in 6 characters


def sweep_layer_table(result: "SweepResult", title: str, max_wide: int = 6) -> Table:
    """Mean test accuracy per (layer, method), * at the layer chosen on validation; layers are rows when there are many."""
    from rich import box

    acc = {(r["method"], r["layer"]): r["accuracy"] for r in result.table()}
    methods = [m for m in result.methods if any(r["method"] == m for r in result.rows)]  # multi-layer has no rows
    chosen = {m: result.best_layer(m) for m in methods}

    def cell(m: str, layer: int) -> str:
        v = acc.get((m, layer))
        return "-" if v is None else f"{v:.3f}" + ("*" if chosen[m] == layer else " ")

    table = Table(title=title, box=box.SIMPLE_HEAD, caption="* layer chosen on validation data; random = baseline per layer")
    if len(result.layers) > max_wide:
        table.add_column("layer", justify="right", no_wrap=True)
        for m in methods:
            table.add_column(_header(m), justify="right", no_wrap=True, min_width=6)
        for layer in result.layers:
            table.add_row(str(layer), *[cell(m, layer) for m in methods])
    else:
        table.add_column("method", no_wrap=True)
        for layer in result.layers:
            table.add_column(f"L{layer}", justify="right", no_wrap=True, min_width=6)
        for m in methods:
            table.add_row(m, *[cell(m, layer) for layer in result.layers])
    return table


def sweep_choice_table(result: "SweepResult") -> Table:
    """Per method: the validation-chosen layer, its validation accuracy, and its test accuracy with the 95% interval."""
    from rich import box

    table = Table(title=f"layer chosen on {result.chosen_on} data, scored on the test folds", box=box.SIMPLE_HEAD)
    for name in ("method", "layer", "val acc", "test acc", "95% interval", "n test"):
        table.add_column(name, justify="left" if name == "method" else "right", no_wrap=True)
    for m in result.methods:
        h = result.headline(m)
        ci = "-" if h.get("accuracy_lo") is None else f"{h['accuracy_lo']:.3f}-{h['accuracy_hi']:.3f}"
        val = "-" if h.get("val_accuracy") is None else f"{h['val_accuracy']:.3f}"
        table.add_row(m, "all" if h["layer"] == -1 else str(h["layer"]), val, f"{h['accuracy']:.3f}", ci, str(h.get("n_test")))
    return table
