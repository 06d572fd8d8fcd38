"""`extract(..., engine="ray")` writes the same folder as the local engine, byte for byte, and resumes (local Ray,
two actors, started here)."""

from __future__ import annotations

import functools
import json

import pytest

from conftest import GPT2_DIR
from liedetect.activations import Activations, extract
from liedetect.models import tiny_native

pytestmark = pytest.mark.slow

TEXTS = [f"statement number {i} is {'true' if i % 3 else 'false'}, said the {i % 5}th city" for i in range(26)]


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_ray_shards_equal_local_shards_byte_for_byte_and_resume(ray_local, tiny_model, tmp_path, monkeypatch):
    import shutil

    import liedetect.activations as activations

    options = {"model_factory": functools.partial(tiny_native, GPT2_DIR, seed=0), "num_actors": 2}
    kwargs = dict(layers=[0, 2], position="all", shard_size=6, batch_size=4, labels=[i % 2 for i in range(26)],
                  progress=False)
    local = extract(tiny_model, TEXTS, out=tmp_path / "local", **kwargs)
    assert len([n for n in files(tmp_path / "local") if n.startswith("shard-")]) == 5
    # a ray folder left by a killed run: 2 of 5 shards and an unfinished meta.json
    folder = tmp_path / "ray"
    folder.mkdir()
    for name in ("shard-00000.safetensors", "shard-00002.safetensors"):
        shutil.copy2(tmp_path / "local" / name, folder / name)
    meta = json.loads((tmp_path / "local" / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "complete": False}, indent=2))
    kept = {n: (folder / n).stat().st_mtime_ns for n in ("shard-00000.safetensors", "shard-00002.safetensors")}
    with pytest.raises(Exception, match="unfinished"):
        Activations.load(folder)
    def not_here(*args, **kwargs):
        raise AssertionError("the driver captured a shard itself")

    monkeypatch.setattr(activations, "_capture", not_here)  # the actors, other processes, keep the real one
    remote = extract(tiny_model, TEXTS, out=folder, engine="ray", ray_options=options, **kwargs)
    assert {n: (folder / n).stat().st_mtime_ns for n in kept} == kept, "a finished shard was recomputed"
    assert files(folder) == files(tmp_path / "local"), "the 3 shards Ray captured differ from the local engine's"
    assert remote.acts.equal(local.acts) and remote.lengths.equal(local.lengths)


def test_ray_engine_needs_an_output_folder(tiny_model):
    from liedetect.errors import DataError

    with pytest.raises(DataError, match="output folder"):
        extract(tiny_model, TEXTS, layers=[0], engine="ray", progress=False)
    with pytest.raises(DataError, match="Unknown engine"):
        extract(tiny_model, TEXTS, layers=[0], engine="spark", progress=False)
