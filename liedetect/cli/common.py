"""What every liedetect command shares: consoles, the error wrapper, common options, tables.

Sub-command modules (liedetect/cli/*.py) build a typer app from these; the top-level cli.py mounts them.
"""

from __future__ import annotations

import functools
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from liedetect.errors import LiedetectError
from probes.errors import ProbeError

console = Console(markup=False)  # results hold user data (paths, group names, generated text): never read as markup
err_console = Console(stderr=True)  # our own messages; user data in them goes through `escape`

DEFAULT_MODEL = "organism"


DEBUG = {"on": False}  # set by the top-level --debug flag: show tracebacks instead of one sentence


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def friendly_errors(fn: Callable) -> Callable:
    """Turn liedetect's own errors into one red line and exit code 2; anything unexpected into one line and exit 1.

    With --debug every error shows its traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import click

        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (LiedetectError, ProbeError, OSError) as exc:
            if DEBUG["on"]:
                raise
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                where = f" ({exc.filename})" if exc.filename else ""
                text = f"{exc.strerror or _one_line(exc)}{where}; check the path and its permissions."
            else:
                text = _one_line(exc)
            err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2)
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]: finished work was kept on disk.")
            raise typer.Exit(code=130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, never a traceback
            if DEBUG["on"]:
                raise
            err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(_one_line(exc)[:300])}. This is a bug in "
                              f"liedetect; rerun with --debug (liedetect --debug COMMAND ...) and report the traceback.",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(code=1)

    return wrapper


def parse_layers(spec: Optional[str], n_layers: int) -> List[int]:
    """'all', '3', '2,4,6', '2-5' or negative indices -> a sorted list of layer indices."""
    from liedetect.models import resolve_layers

    return resolve_layers(spec, n_layers)


def print_table(title: str, rows: List[dict]) -> None:
    """Print a list of dicts as a rich table."""
    if not rows:
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(table)


ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="'organism', 'smollm2', a .gguf file, a Hugging Face name or a local model folder.")
DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:1 or auto.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
BosOpt = typer.Option("auto", "--bos", help="BOS token before each text: auto (what the model's own tokenizer does), always or never.")
