"""Export a steering spec as a llama.cpp control vector (GGUF, arch "controlvector", tensors `direction.{layer}`).

llama.cpp adds `direction.{il}` (times the user's --control-vector-scaled strength) to the output of
layer `il` (0-based), at every token: that is `blocks.{il}.hook_resid_post` here with op "add" and
positions "all". Its loader has no slot for layer 0, so layer 0 cannot be exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from liedetect.errors import SteeringError
from liedetect.steering.spec import SteeringSpec

ARCH = "controlvector"


def control_vectors(spec: SteeringSpec) -> Dict[int, np.ndarray]:
    """The vectors llama.cpp will add per layer: alpha (x residual norm when scale='norm') times the summed directions."""
    if spec.op != "add":
        raise SteeringError(f"llama.cpp control vectors can only add; this spec does {spec.op!r}. "
                            f"Bake ablations into the weights with liedetect.steering.orthogonalize instead.")
    if not (isinstance(spec.positions, str) and spec.positions == "all"):
        raise SteeringError("llama.cpp applies control vectors at every token; export a spec with positions='all'.")
    if spec.hooks != ("resid_post",):
        raise SteeringError(f"llama.cpp adds control vectors to each layer's output (resid_post), not {spec.hooks}.")
    if 0 in spec.directions:
        raise SteeringError("llama.cpp control vectors have no slot for layer 0; steer layers 1 and above to export.")
    if spec.scale == "norm" and spec.norms is None:
        raise SteeringError("This spec has alpha in residual-norm units but no measured norms; call spec.calibrate(model).")
    out = {}
    for layer in spec.layers:
        factor = spec.alpha * (spec.norms[layer] if spec.scale == "norm" else 1.0)
        out[layer] = (factor * spec.directions[layer].sum(0)).numpy().astype(np.float32)
    return out


def export_gguf(spec: SteeringSpec, path: Union[str, Path], model_hint: str = "unknown") -> Path:
    """Write `spec` as a GGUF control vector that llama.cpp loads with --control-vector FILE."""
    import gguf

    vectors = control_vectors(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(f"{ARCH}.model_hint", model_hint)
    writer.add_uint32(f"{ARCH}.layer_count", len(vectors))
    for layer, vec in vectors.items():
        writer.add_tensor(f"direction.{layer}", vec)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_gguf(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a control vector back with the gguf reader: {'arch', 'model_hint', 'layer_count', 'directions': {layer: array}}."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(name: str) -> Optional[Any]:
        f = reader.fields.get(name)
        if f is None:
            return None
        value = f.parts[f.data[0]]
        return bytes(value).decode("utf-8") if f.types and f.types[0] == gguf.GGUFValueType.STRING else value.item()

    directions = {int(t.name.split(".")[1]): np.asarray(t.data, dtype=np.float32).reshape(-1)
                  for t in reader.tensors if t.name.startswith("direction.")}
    return {"arch": field("general.architecture"), "model_hint": field(f"{ARCH}.model_hint"),
            "layer_count": field(f"{ARCH}.layer_count"), "directions": directions}
