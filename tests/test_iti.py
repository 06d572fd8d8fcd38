"""ITI: per-head probes find a planted head first, the shift moves a head by exactly alpha x std along its direction,
MC1/MC2 agree with an independent computation and read the organism's honest vs liar behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liedetect.errors import DataError, SteeringError
from liedetect.iti import ITIIntervention, TQAItem, capture_heads, fit_iti, lm_loss, load_truthfulqa, mc_scores, two_fold


def planted(n=240, layers=3, heads=4, d=8, where=(2, 1), gap=3.0, seed=0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, layers, heads, d))
    y = np.arange(n) % 2
    u = g.normal(size=d)
    u /= np.linalg.norm(u)
    x[:, where[0], where[1]] += np.outer(y - 0.5, u) * gap  # true rows sit `gap` further along u than false rows
    return torch.tensor(x, dtype=torch.float32), y, np.arange(n) // 2, u


def test_planted_head_is_ranked_first_with_its_direction():
    x, y, groups, u = planted()
    iti = fit_iti(x, y, groups, k=3, alpha=2.0, seed=0)
    acc = iti.accuracies
    assert iti.heads[0] == (2, 1)
    assert acc[2, 1] >= 0.9, acc  # separable up to noise: gap 3 over unit noise -> ~93% Bayes accuracy
    others = np.delete(acc.ravel(), 2 * 4 + 1)
    assert others.max() <= 0.72, acc  # chance heads, 48 validation rows each
    d = iti.directions[0].double().numpy()
    assert abs(d @ u) >= 0.95
    proj = x[:, 2, 1].double().numpy() @ d
    assert iti.stds[0].item() == pytest.approx(proj.std(), rel=1e-4)  # independent numpy check


def test_shift_moves_the_chosen_head_by_alpha_std(organism_model):
    model = organism_model
    world = model.organism_world
    texts = [p.text for p in world.prompts(6, split="heldout", persona="liar", seed=2)]
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    d = torch.randn(model.cfg.d_head, generator=torch.Generator().manual_seed(0))
    d /= d.norm()
    iti = ITIIntervention([(1, 2)], d[None], torch.tensor([0.5]), alpha=3.0)
    seen = {}

    def keep(name):
        def fn(z, hook):
            seen[name] = z.detach().clone()
            return z
        return fn

    hooks = [(name, keep(name)) for name in ("blocks.1.attn.hook_z", "blocks.0.attn.hook_z")]  # hook.name is the o.hook_in alias
    base_logits = model(enc["input_ids"], attention_mask=enc["attention_mask"])
    with model.hooks(fwd_hooks=hooks):
        model(enc["input_ids"], attention_mask=enc["attention_mask"])
    before = dict(seen)
    with iti.apply(model):
        with model.hooks(fwd_hooks=hooks):  # inner hooks run after the shift
            shifted_logits = model(enc["input_ids"], attention_mask=enc["attention_mask"])
    delta = seen["blocks.1.attn.hook_z"] - before["blocks.1.attn.hook_z"]
    assert torch.allclose(delta[:, :, 2], (1.5 * d).expand_as(delta[:, :, 2]), atol=1e-5)  # 3.0 x 0.5 along d
    assert torch.allclose((delta[:, :, 2] @ d), torch.full(delta.shape[:2], 1.5), atol=1e-5)
    assert delta[:, :, [0, 1, 3]].abs().max() == 0  # other heads untouched
    assert torch.equal(seen["blocks.0.attn.hook_z"], before["blocks.0.attn.hook_z"])  # earlier layer untouched
    assert (shifted_logits - base_logits).abs().max() > 1e-3
    assert torch.equal(model(enc["input_ids"], attention_mask=enc["attention_mask"]), base_logits)  # hooks came off


def test_generated_positions_leave_the_prompt_alone(organism_model):
    model = organism_model
    ids = model.tokenizer([model.organism_world.prompts(1, seed=4)[0].text], return_tensors="pt")["input_ids"]
    iti = ITIIntervention([(3, 0)], torch.ones(1, model.cfg.d_head) / model.cfg.d_head ** 0.5, torch.tensor([1.0]), alpha=4.0)
    seen = {}
    base = model(ids)
    with iti.apply(model, positions="generated", prompt_len=ids.shape[1] - 2):
        with model.hooks(fwd_hooks=[("blocks.3.attn.hook_z", lambda z, hook: seen.setdefault("z", z.clone()))]):
            out = model(ids)
    assert torch.allclose(out[:, :-2], base[:, :-2], atol=1e-6)  # prompt positions unchanged
    assert (out[:, -2:] - base[:, -2:]).abs().max() > 1e-3
    with pytest.raises(SteeringError):
        with iti.apply(model, positions="prompt"):
            pass


def test_mc_scores_match_an_independent_computation_and_read_the_organism(organism_model):
    model = organism_model
    world = model.organism_world
    items = {}
    for persona in ("honest", "liar"):
        prompts = world.prompts(40, split="heldout", persona=persona, seed=5)
        items[persona] = [TQAItem(p.text, "True" if p.truth else "False", ["True" if p.truth else "False"],
                                  ["False" if p.truth else "True"]) for p in prompts]
    honest = mc_scores(model, items["honest"], template="{question}")
    liar = mc_scores(model, items["liar"], template="{question}")
    assert honest["mc1"] >= 0.95 and liar["mc1"] <= 0.05, (honest, liar)  # the liar prefers the false answer
    # independent MC2: softmax over the two answer tokens at the last position
    enc = model.tokenizer([i.question for i in items["honest"]], padding=True, return_tensors="pt")
    logits = model(enc["input_ids"], attention_mask=enc["attention_mask"])[torch.arange(40), enc["attention_mask"].sum(1) - 1]
    t, f = model.tokenizer.convert_tokens_to_ids(["True", "False"])
    p_true = torch.softmax(logits[:, [t, f]].detach().double(), -1)[:, 0].numpy()
    want = np.mean([p if i.best == "True" else 1 - p for p, i in zip(p_true, items["honest"])])
    assert honest["mc2"] == pytest.approx(want, abs=1e-4)


def test_capture_shape_save_load_and_loss(organism_model, tmp_path):
    model = organism_model
    texts = [p.text for p in model.organism_world.prompts(5, seed=6)]
    acts = capture_heads(model, texts, batch_size=2)
    assert acts.shape == (5, model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head)
    x, y, groups, _ = planted(n=40, layers=model.cfg.n_layers, heads=model.cfg.n_heads, d=model.cfg.d_head)
    iti = fit_iti(x, y, groups, k=2)
    again = ITIIntervention.load(iti.save(tmp_path / "iti"))
    assert again.heads == iti.heads and torch.equal(again.directions, iti.directions)
    assert np.allclose(again.accuracies, iti.accuracies)
    loss = lm_loss(model, model.organism_world.knowledge_sentences()[:20])
    assert 0 < loss < 2.0  # the organism was trained on these sentences: far below log(vocab)


def test_bad_inputs(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("Question,Answer\nq,a\n")
    with pytest.raises(DataError, match="lacks the column"):
        load_truthfulqa(bad)
    a, b = two_fold(11)
    assert len(a) == 5 and len(b) == 6 and not set(a) & set(b)


@pytest.mark.shared_data
def test_truthfulqa_reads_817_questions(shared_data):
    items = load_truthfulqa(shared_data / "truthfulqa" / "TruthfulQA.csv")
    assert len(items) == 817
    assert all(i.best in i.correct and i.incorrect for i in items)


def test_cli_fit_then_eval_on_the_organism(organism_model, tmp_path):
    import csv
    import json

    from typer.testing import CliRunner

    from cli import app

    world = organism_model.organism_world
    path = tmp_path / "tqa.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Question", "Best Answer", "Correct Answers", "Incorrect Answers"])
        for p in world.prompts(40, split="heldout", persona="honest", seed=9):
            right, wrong = ("True", "False") if p.truth else ("False", "True")
            w.writerow([p.text, right, right, wrong])
    runner = CliRunner()
    args = ["iti", "fit", "--model", "organism", "--data", str(path), "--k", "3", "--template", "{question}", "--out", str(tmp_path / "iti"),
            "--heatmap", str(tmp_path / "heads.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "heads.png").stat().st_size > 1000
    result = runner.invoke(app, ["iti", "eval", "--model", "organism", "--intervention", str(tmp_path / "iti"), "--data", str(path),
                                 "--alphas", "0,5", "--json", str(tmp_path / "mc.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "mc.json").read_text())
    assert [r["alpha"] for r in rows] == [0.0, 5.0] and rows[0]["n_questions"] == 20  # the held-out fold
    assert rows[0]["mc1"] >= 0.9  # the honest organism answers its own world's questions
    bad = runner.invoke(app, ["iti", "fit", "--model", "organism", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "No TruthfulQA file" in bad.output  # one sentence, from liedetect.paths


def test_paired_bootstrap_numbers():
    from liedetect.iti import paired_bootstrap

    out = paired_bootstrap([0, 0, 1, 1] * 10, [1, 0, 1, 1] * 10)
    assert out["delta"] == pytest.approx(0.25)
    assert 0.1 <= out["lo"] < 0.25 < out["hi"] <= 0.4
    same = paired_bootstrap([0.2, 0.5, 0.9], [0.2, 0.5, 0.9])
    assert same == {"delta": 0.0, "lo": 0.0, "hi": 0.0}
