"""Run a GGUF model in llama.cpp (llama-cpp-python, the `interop` extra) with an exported control vector.

This is the other side of `liedetect.steering.gguf_export`: it lays a control vector out exactly as llama.cpp's
own loader does (`common_control_vector_load`: tensor `direction.N` fills buffer offset (N-1)*n_embd,
strengths multiply and files add up) and hands it to `llama_set_adapter_cvec` for layers 1..n_layer-1.
llama.cpp then adds the layer-N slice to the output of block N (after the feed-forward residual add,
`l_out` in its graph), at every token: liedetect's `blocks.N.hook_resid_post` with positions "all".
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from liedetect.errors import LiedetectError, ModelNotFoundError, SteeringError

INSTALL_HINT = ("llama-cpp-python is not installed; install the interop extra (pip install 'liedetect[interop]', "
                "which compiles llama.cpp: a C++17 compiler and cmake >= 3.21 are needed) or run make test.")

ControlVector = Union[str, Path, Mapping[int, Any]]


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise LiedetectError(INSTALL_HINT) from None
    return llama_cpp


# Loads the model and evaluates two tokens, in a child process (see check_in_child).
_CHILD_CHECK = """
import sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=16, n_batch=16, n_threads=1, n_threads_batch=1, verbose=False)
llm.eval((llm.tokenize(b"The capital of", add_bos=False) or [0])[:2])
"""
_CHECKED: set = set()


def check_in_child(path: Union[str, Path], timeout: float = 600.0) -> None:
    """Load `path` and run llama.cpp on two tokens in a child process, so that a fault (an instruction this CPU or VM
    refuses, a broken build) is one sentence here instead of a crash of this process."""
    key = str(Path(path).resolve())
    if key in _CHECKED:
        return
    _llama_cpp()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD_CHECK, key], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LiedetectError(f"llama.cpp did not load and run {path} within {timeout:.0f} s in a check process; "
                             f"pass check=False to skip the check.") from None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise LiedetectError(
            f"llama.cpp crashed with {name} running {path} in a check process: its build uses an instruction this "
            f"machine refuses (AMX or AVX-512 from a -march=native build); rebuild llama-cpp-python with "
            f"CMAKE_ARGS='-DGGML_NATIVE=OFF' as docs/interop.md shows.")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise LiedetectError(f"llama.cpp could not load and run {path} ({last}).")
    _CHECKED.add(key)


def load_llamacpp(path: Union[str, Path], n_ctx: int = 256, n_threads: Optional[int] = None,
                  check: bool = True) -> Any:
    """Open a GGUF model in llama.cpp (a `llama_cpp.Llama`, CPU, quiet); `check` first runs it in a child process."""
    llama_cpp = _llama_cpp()
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"No GGUF file at {path}; pass the path of a .gguf model file.")
    if check:
        check_in_child(path)
    threads = {} if n_threads is None else {"n_threads": n_threads, "n_threads_batch": n_threads}
    return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, verbose=False, **threads)


def _dims(llm: Any) -> tuple:
    llama_cpp = _llama_cpp()
    return llama_cpp.llama_model_n_embd(llm._model.model), llama_cpp.llama_model_n_layer(llm._model.model)


def control_vector_buffer(directions: Mapping[int, Any], n_embd: int, n_layer: int, strength: float = 1.0) -> np.ndarray:
    """The flat float32 buffer llama.cpp's loader builds: `strength * direction.N` at offset (N-1)*n_embd, N in 1..n_layer-1."""
    buf = np.zeros((n_layer - 1) * n_embd, dtype=np.float32)
    for layer, vec in directions.items():
        layer = int(layer)
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.size != n_embd:
            raise SteeringError(f"direction.{layer} has width {vec.size} but the llama.cpp model has n_embd {n_embd}; "
                                f"export the control vector from the same model.")
        if not 1 <= layer < n_layer:
            raise SteeringError(f"direction.{layer} is outside llama.cpp's control-vector layers 1..{n_layer - 1}.")
        buf[(layer - 1) * n_embd: layer * n_embd] += strength * vec
    return buf


def read_control_vector(path: Union[str, Path]) -> Dict[int, np.ndarray]:
    """The `direction.N` tensors of a control-vector GGUF, by layer N."""
    from liedetect.steering.gguf_export import ARCH, read_gguf

    info = read_gguf(path)
    if info["arch"] != ARCH:
        raise SteeringError(f"{path} has architecture {info['arch']!r}, not {ARCH!r}; pass a control-vector GGUF.")
    return info["directions"]


def set_control_vector(llm: Any, vector: Optional[ControlVector], strength: float = 1.0) -> None:
    """Apply a control vector (GGUF path or {layer: vector}) to every layer llama.cpp allows, or clear it with None."""
    llama_cpp = _llama_cpp()
    n_embd, n_layer = _dims(llm)
    ctx = llm._ctx.ctx
    if vector is None:
        rc = llama_cpp.llama_set_adapter_cvec(ctx, None, 0, n_embd, -1, -1)
    else:
        directions = read_control_vector(vector) if isinstance(vector, (str, Path)) else vector
        buf = control_vector_buffer(directions, n_embd, n_layer, strength)
        rc = llama_cpp.llama_set_adapter_cvec(ctx, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), buf.size,
                                             n_embd, 1, n_layer)
    if rc != 0:
        raise SteeringError(f"llama.cpp refused the control vector (code {rc}); check that it was exported for this model.")


@contextlib.contextmanager
def control_vector(llm: Any, vector: ControlVector, strength: float = 1.0) -> Iterator[Any]:
    """Steer `llm` with a control vector inside the `with` block; cleared on exit whatever happens."""
    set_control_vector(llm, vector, strength)
    try:
        yield llm
    finally:
        set_control_vector(llm, None)


def next_token_logits(llm: Any, token_ids: Sequence[int]) -> np.ndarray:
    """llama.cpp's next-token logits after exactly `token_ids` (no BOS added, fresh KV cache), as float32 [n_vocab]."""
    llama_cpp = _llama_cpp()
    llm.reset()
    llm.eval([int(t) for t in token_ids])
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)
