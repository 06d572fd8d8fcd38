"""What every liedetect command shares: consoles, the error wrapper, common options, tables.

Sub-command modules (liedetect/cli/*.py) build a typer app from these; the top-level cli.py mounts them.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from liedetect.errors import LiedetectError

console = Console(markup=False)  # results hold user data (paths, group names, generated text): never read as markup
err_console = Console(stderr=True)  # our own messages; user data in them goes through `escape`

DEFAULT_MODEL = "organism"


DEBUG = {"on": False}  # set by the top-level --debug flag: show tracebacks instead of one sentence


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _user_errors() -> tuple:
    """Errors a user can act on. probes' ProbeError counts once probes is loaded (only then can it be raised);
    importing it up front would load torch and scikit-learn and cost `liedetect --help` seconds."""
    probe_errors = sys.modules.get("probes.errors")
    return (LiedetectError, OSError) + ((probe_errors.ProbeError,) if probe_errors else ())


def _handled_by_typer() -> tuple:
    """Exceptions typer turns into an exit code and a usage message itself: click's, and typer's own copies
    (newer typer vendors click, so typer.Exit / typer.BadParameter are not click's classes)."""
    import click

    vendored = tuple(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")
    return (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, typer.Exit, typer.Abort) + vendored


def friendly_errors(fn: Callable) -> Callable:
    """Turn liedetect's own errors into one red line and exit code 2; anything unexpected into one line and exit 1.

    With --debug every error shows its traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _handled_by_typer():
            raise
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]: finished work was kept on disk.")
            raise typer.Exit(code=130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, never a traceback
            if DEBUG["on"]:
                raise
            if not isinstance(exc, _user_errors()):
                err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(_one_line(exc)[:300])}. This is a bug in "
                                  f"liedetect; rerun with --debug (liedetect --debug COMMAND ...) and report the traceback.",
                                  highlight=False, soft_wrap=True)
                raise typer.Exit(code=1)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                where = f" ({exc.filename})" if exc.filename else ""
                text = f"{exc.strerror or _one_line(exc)}{where}; check the path and its permissions."
            else:
                text = _one_line(exc)
            err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2)

    return wrapper


def parse_layers(spec: Optional[str], n_layers: int) -> List[int]:
    """'all', '3', '2,4,6', '2-5' or negative indices -> a sorted list of layer indices."""
    from liedetect.models import resolve_layers

    return resolve_layers(spec, n_layers)


def print_table(title: str, rows: List[dict]) -> None:
    """Print a list of dicts as a rich table."""
    if not rows:
        return
    if len(rows) == 1 and len(rows[0]) > 4:  # one wide record (metrics): a name/value list fits any terminal
        rows = [{"name": k, "value": v} for k, v in rows[0].items()]
    table = Table(title=title)  # `console` reads no markup: user data in titles and cells prints as it is
    for key in rows[0]:  # numbers keep their width (never split mid-number at 80 columns); text wraps
        cells = [f"{r[key]:.4f}" if isinstance(r.get(key), float) else str(r.get(key)) for r in rows]
        numeric = all(isinstance(r.get(key), (int, float)) for r in rows)
        table.add_column(str(key), justify="right" if numeric else "left", overflow="fold",
                         min_width=max(map(len, cells)) if numeric else None)
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(table)


ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="'organism', 'smollm2', a .gguf file, a Hugging Face name or a local model folder.")
DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:1 or auto.")
DtypeOpt = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: float32).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
BosOpt = typer.Option("auto", "--bos", help="BOS token before each text: auto (what the model's own tokenizer does), always or never.")
DataArg = typer.Argument(None, metavar="DATA", show_default=False,
                         help="CSV/JSONL with statement,label, or builtin:NAME.")
DataFlag = typer.Option(None, "--data", "-d", hidden=True, help="Same as DATA (older spelling).")


def pick_input(positional, flag, name: str, flag_name: str):
    """The primary input, given as the first argument (or, as before, by its option); exactly one of the two."""
    from liedetect.errors import DataError

    if positional is not None and flag is not None and str(positional) != str(flag):
        raise DataError(f"{name} was given twice ({positional} and {flag_name} {flag}); pass it once, as the first argument.")
    value = positional if positional is not None else flag
    if value is None:
        raise DataError(f"Missing {name}: pass it as the first argument (see --help).")
    return value


JsonOpt = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout instead of tables.")


def print_json(doc: dict) -> None:
    """One JSON document on stdout (paths as strings, NaN as null): for scripts, never rich markup or wrapping."""
    import json

    from probes.base import _jsonable  # a command has run, so torch is loaded already

    typer.echo(json.dumps(_jsonable(doc, other=str), indent=1))
