"""liedetect's numbers against outside references, on real models and the shared Truth_is_Universal sets.

- LR: the sweep's headline (layer chosen on validation per fold, refitted on the fold's training part) equals plain
  scikit-learn (StandardScaler + LogisticRegression(C=1)) fitted on the same folds at the same layers, within a point,
  on every shared set and its negation, on SmolLM2-135M and Gemma-3-270M.
- TTPD: liedetect's probe against a port of the paper's own code (sciai-lab/Truth_is_Universal, probes.py:
  learn_truth_directions, learn_polarity_direction, TTPD.from_data), run on the same activations: train on three
  topics (both polarities), test on the fourth, within a point per cell.

One capture per model (200 statements per set, three layers fixed before the test), shared by every test here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

PER_SET = 200
PAIRS = ("cities", "sp_en_trans", "animal_class", "facts")  # each with its neg_ twin
SETS = (*PAIRS, *(f"neg_{p}" for p in PAIRS), "larger_than", "smaller_than")
GROUP_COLUMN = {"cities": "city", "neg_cities": "city", "larger_than": "n1", "smaller_than": "n1"}
MODELS = {"smollm2": [12, 18, 24], "gemma3-270m": [6, 9, 12]}  # middle layers, fixed before any number was seen


@pytest.fixture(scope="module", params=sorted(MODELS))
def captured(request, shared_data):
    """{set name: (activations [n, 3, d], labels, groups or None)} for one model."""
    from liedetect.datasets import load_statements
    from liedetect.errors import ModelNotFoundError
    from liedetect.models import load_model
    from liedetect.training import capture_inputs

    name = request.param
    try:
        model = load_model(name, device="cpu")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    out = {}
    for s in SETS:
        data = load_statements(shared_data / "truth_is_universal" / f"{s}.csv").sample(PER_SET, seed=0)
        inputs = capture_inputs(model, data, MODELS[name], ["lr"], batch_size=32, progress=False)
        column = GROUP_COLUMN.get(s)
        out[s] = (inputs.single, inputs.labels, None if column is None else list(data.extra[column]))
    return name, MODELS[name], out


def sklearn_folds(y: np.ndarray, groups, seed: int = 0):
    """The folds built with scikit-learn itself (what probes.selection.splits must give)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    idx = np.arange(len(y))
    if groups is None:
        return [(tr, te) for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(idx, y)]
    keys = np.asarray([str(g) for g in groups])
    return [(np.sort(tr), np.sort(te)) for tr, te in
            StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(idx, y, keys)]


def test_lr_headline_equals_plain_sklearn_on_every_shared_set(captured, one_thread):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from probes.selection import splits
    from probes.sweep import sweep

    name, layers, data = captured
    report = {}
    for s, (X, y, groups) in data.items():
        folds = sklearn_folds(y, groups)
        ours_folds = splits(y, kfold=5, seed=0, groups=groups)
        assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, ours_folds)), s
        head = sweep(X, y, layers=layers, methods=["lr"], kfold=5, seed=0, groups=groups, n_boot=0).headline("lr")
        hits = 0
        for (tr, te), layer in zip(folds, head["fold_layers"]):
            Z = X[:, layers.index(layer)].numpy()
            ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(Z[tr], y[tr])
            hits += int((ref.predict(Z[te]) == y[te]).sum())
        report[s] = (head["accuracy"], hits / len(y))
    print(f"\n{name}: LR headline vs scikit-learn, same folds and layers: "
          + ", ".join(f"{s} {a:.3f}/{b:.3f}" for s, (a, b) in report.items()))
    for s, (ours, theirs) in report.items():
        assert abs(ours - theirs) <= 0.01, (s, ours, theirs)


# ---------------------------------------------------------------- the paper's TTPD, ported from its code


def reference_ttpd(acts_centered: torch.Tensor, acts: torch.Tensor, labels: torch.Tensor, polarities: torch.Tensor,
                   max_iter: int = 100, features: type = np.float32):
    """sciai-lab/Truth_is_Universal probes.py, TTPD.from_data, line for line (polarities +1/-1, labels 1/0).

    `features`: the dtype of the 2-D read-out's features; float32 as the paper's code computes them (torch float32
    activations to numpy). On Gemma-3-270M those features sit at mean -10,900 and spread 2,400 (its residual
    offsets), and scikit-learn's lbfgs stops in float32 after 10 iterations near zero weights (training accuracy
    0.505, no convergence warning): the published code reads chance there. In float64 the same read-out converges."""
    from sklearn.linear_model import LogisticRegression

    labels_pm = torch.where(labels == 0.0, torch.tensor(-1.0), labels)
    design = torch.column_stack([labels_pm, labels_pm * polarities])
    solution = torch.linalg.inv(design.T @ design) @ design.T @ acts_centered
    t_g = solution[0, :].numpy()
    pol01 = polarities.clone()
    pol01[pol01 == -1.0] = 0.0
    polarity_direc = LogisticRegression(penalty=None, fit_intercept=True, max_iter=max_iter).fit(
        acts.numpy(), pol01.numpy()).coef_

    def project(a: torch.Tensor) -> np.ndarray:
        return np.concatenate(((a.numpy() @ t_g)[:, None], a.numpy() @ polarity_direc.T), axis=1).astype(features)

    readout = LogisticRegression(penalty=None, fit_intercept=True, max_iter=max_iter).fit(project(acts), labels.numpy())
    return lambda a: readout.predict(project(a))


def test_ttpd_agrees_with_the_papers_code_per_held_out_topic(captured, one_thread):
    from probes.logistic import LogisticProbe
    from probes.ttpd import TTPDProbe

    name, layers, data = captured
    li = 1  # the middle one of the three captured layers
    cells = {}
    for held in PAIRS:
        train = [t for t in PAIRS if t != held]
        parts = [(s, data[s][0][:, li], data[s][1]) for t in train for s in (t, f"neg_{t}")]
        X = torch.cat([x for _, x, _ in parts]).float()
        y = np.concatenate([lab for _, _, lab in parts])
        pol = np.concatenate([np.full(len(lab), -1.0 if s.startswith("neg_") else 1.0) for s, _, lab in parts])
        topic = np.concatenate([[s] * len(lab) for s, _, lab in parts])
        centred = torch.cat([x - x.mean(0) for _, x, _ in parts]).float()  # each set on its own mean, as the paper
        labels_t, pol_t = torch.tensor(y, dtype=torch.float32), torch.tensor(pol, dtype=torch.float32)
        ref = reference_ttpd(centred, X, labels_t, pol_t, features=np.float64)  # liedetect reads out in float64
        published = reference_ttpd(centred, X, labels_t, pol_t)
        ours = TTPDProbe().fit(X, y, polarity=pol, groups=topic)
        lr = LogisticProbe().fit(X, y)
        for s in (held, f"neg_{held}"):
            Xt, yt = data[s][0][:, li].float(), data[s][1]
            cells[s] = (ours.score(Xt, yt), float((ref(Xt) == yt).mean()), lr.score(Xt, yt),
                        float((published(Xt) == yt).mean()))
        w = ours.fit_info_["weights_tG_polarity"]
        assert abs(w[1]) > 0.05 * abs(w[0]), w  # the polarity feature carries weight in the read-out
    print(f"\n{name} layer {layers[li]}: held-out topic accuracy, ours / paper's code (float64 read-out) / LR / "
          "paper's code as published: " + ", ".join(f"{s} {a:.3f}/{b:.3f}/{c:.3f}/{d:.3f}"
                                                     for s, (a, b, c, d) in cells.items()))
    for s, (ours_acc, ref_acc, _, _) in cells.items():
        assert abs(ours_acc - ref_acc) <= 0.01, (s, ours_acc, ref_acc)
