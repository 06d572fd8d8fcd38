"""The CLI turns bad input into one clear sentence and exit code 2, and keeps finished work."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_info_on_a_local_encoder(minilm_path):
    code, out = run("info", minilm_path)
    assert code == 0 and "384" in out and "resid_post" in out


def test_info_json_is_one_document_on_stdout():
    import json

    result = runner.invoke(app, ["info", "organism", "--json"])
    doc = json.loads(result.stdout)  # nothing but the JSON (no "Moving model to device" chatter)
    assert result.exit_code == 0 and doc["layers"] == 5 and doc["d_model"] == 128 and "resid_post" in doc["hooks_per_block"]


def test_missing_model_is_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run("info", "no-such-org/no-such-model")
    assert code == 2
    assert "Could not load model 'no-such-org/no-such-model'" in out and "--model DIR" in out
    assert "Traceback" not in out


def test_extract_bad_inputs(tmp_path, minilm_path):
    (tmp_path / "d.csv").write_text("statement,label\nParis is in France.,1\nParis is in Japan.,0\n")
    (tmp_path / "empty.csv").write_text("statement,label\n")
    (tmp_path / "m").mkdir()  # a model folder without config.json (an --out inside it would be refused first)
    cases = [
        (["extract", tmp_path / "d.csv", "--model", minilm_path, "--out", tmp_path / "o1", "--layers", "12"], "does not exist"),
        (["extract", tmp_path / "empty.csv", "--model", minilm_path, "--out", tmp_path / "o2"], "no usable"),
        (["extract", tmp_path / "nope.csv", "--model", minilm_path, "--out", tmp_path / "o3"], "No such dataset file"),
        (["extract", tmp_path / "d.csv", "--model", tmp_path / "m", "--out", tmp_path / "o4"], "no config.json"),
    ]
    for args, expected in cases:
        code, out = run(*args, "--quiet")
        assert code == 2 and expected in out, (args, out)
        assert len(out.strip().splitlines()) <= 3, out


def test_extract_writes_a_loadable_folder(tmp_path, minilm_path):
    from liedetect.activations import Activations

    (tmp_path / "d.csv").write_text("statement,label\nParis is in France.,1\nParis is in Japan.,0\nRome is in Italy.,1\n")
    code, out = run("extract", tmp_path / "d.csv", "--model", minilm_path, "--out", tmp_path / "acts", "--layers", "1,3",
                    "--position", "mean", "--hook", "out", "--quiet")
    assert code == 0, out
    acts = Activations.load(tmp_path / "acts")
    assert acts.acts.shape == (3, 2, 384) and acts.labels.tolist() == [1, 0, 1]


def test_help_loads_no_heavy_library():
    """`liedetect --help` stays fast because torch, transformers and scikit-learn load only inside a command."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; import cli\n"
            "for args in (['--help'], ['score', '--help'], ['sweep', '--help'], ['detector', '--help']):\n"
            "    CliRunner().invoke(cli.app, args)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'transformer_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_tables_keep_every_number_whole_at_80_columns(monkeypatch):
    from rich.console import Console

    import liedetect.cli.common as common

    screen = Console(width=80, record=True)
    monkeypatch.setattr(common, "console", screen)
    wide = {"group": "a-very-long-group-name-that-must-wrap", "n": 400, "mean score": -1.23456, "flagged": 0.95,
            "auroc": 0.8812, "recall@1%": 0.7734, "recall@0.1%": 0.5012, "threshold": -6.20341}
    common.print_table("by group", [wide, dict(wide, n=12)])
    common.print_table("metrics", [{f"metric_{i}": i + 0.123456 for i in range(12)}])
    text = screen.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for number in ("-1.2346", "0.9500", "0.8812", "0.7734", "0.5012", "-6.2034", "11.1235"):
        assert number in text, number


def test_typer_exits_and_usage_errors_raised_in_a_command_keep_their_meaning():
    """typer vendors click: its Exit and BadParameter are not click's, and must not read as 'a bug' (exit 1)."""
    import typer

    from liedetect.cli.common import friendly_errors

    probe = typer.Typer()

    @probe.command()
    @friendly_errors
    def go(kind: str) -> None:
        if kind == "exit":
            raise typer.Exit(code=3)
        raise typer.BadParameter("a bad value")

    assert runner.invoke(probe, ["exit"]).exit_code == 3
    bad = runner.invoke(probe, ["bad"])
    assert bad.exit_code == 2 and "bug" not in bad.output
