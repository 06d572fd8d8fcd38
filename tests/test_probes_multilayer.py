"""Multi-layer probes on planted layer stacks: they find the informative layers and beat any single layer."""

import numpy as np
import pytest
import torch

from probes.errors import ProbeError
from probes.logistic import LogisticProbe
from probes.multilayer import MultiLayerProbe
from tests.conftest import cos


def stack(n: int = 600, L: int = 4, d: int = 32, signal: dict = None, seed: int = 0):
    """[n, L, d] Gaussian activations; layer l carries the label along its own unit direction times signal[l]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, L, d, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(L, d, generator=g), dim=1)
    for layer, strength in (signal or {}).items():
        X[:, layer] += strength * (2 * y[:, None].float() - 1) * dirs[layer]
    return X, y.numpy(), dirs


@pytest.mark.parametrize("combine", ["stack", "concat"])
def test_weak_signals_in_two_layers_beat_every_single_layer(combine):
    # each layer alone: d' = 1.6, accuracy ~0.79; both together: d' = 2.26, ~0.87 (the Bayes rates)
    X, y, dirs = stack(n=1200, signal={1: 0.8, 3: 0.8}, seed=1)
    train, test = slice(0, 800), slice(800, None)
    multi = MultiLayerProbe(layers=[3, 6, 9, 12], combine=combine).fit(X[train], y[train])
    single = max(LogisticProbe(C=1.0).fit(X[train, l], y[train]).score(X[test, l], y[test]) for l in range(4))
    acc = multi.score(X[test], y[test])
    assert acc >= single + 0.04, (acc, single)
    assert cos(multi.direction_[1], dirs[1]) >= 0.8 and cos(multi.direction_[3], dirs[3]) >= 0.8


def test_stacking_weights_the_informative_layer():
    X, y, _ = stack(signal={2: 2.0}, seed=2)
    multi = MultiLayerProbe(combine="stack").fit(X, y)
    w = np.abs(np.array(multi.fit_info_["layer_weights"]))
    assert w.argmax() == 2 and w[2] >= 5 * np.delete(w, 2).max(), w


def test_save_load_round_trip_and_shape_checks(tmp_path):
    from probes.base import load

    X, y, _ = stack(n=200, signal={0: 1.5}, seed=3)
    multi = MultiLayerProbe(layers=[4, 5, 6, 7]).fit(X, y)
    multi.save(tmp_path / "ml")
    back = load(tmp_path / "ml")
    assert back.layers == (4, 5, 6, 7) and tuple(back.direction_.shape) == (4, 32)
    assert torch.allclose(back.decision_function(X), multi.decision_function(X), atol=1e-4)
    with pytest.raises(ProbeError, match="reads 4 layers of width 32"):
        back.decision_function(X[:, :3])
    with pytest.raises(ProbeError, match="holds 4 layers but this probe reads 2"):
        MultiLayerProbe(layers=[1, 2]).fit(X, y)
    with pytest.raises(ProbeError, match=r"\[n, layers, d\]"):
        MultiLayerProbe().fit(X[:, 0], y)
