"""Load the organism checkpoint (weights, config, tokenizer, world), refusing wrong or corrupt files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from liedetect.errors import CheckpointError
from liedetect.organism.tokenizer import load_tokenizer
from liedetect.organism.train import CONFIG_FILE, WEIGHTS_FILE, WORLD_FILE, boot
from liedetect.organism.world import World

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoint"


def read_config(path: Optional[str | Path] = None) -> dict:
    """The checkpoint's config JSON; CheckpointError when missing, unreadable or not an organism."""
    root = Path(path or CHECKPOINT_DIR)
    file = root / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"No organism checkpoint at {root} (missing {CONFIG_FILE}); run `liedetect organism train --out {root}`.") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"The organism config {file} is corrupt ({type(exc).__name__}); re-run `liedetect organism train`.") from None
    if not isinstance(config, dict) or config.get("kind") != "liedetect-organism" or "model" not in config:
        raise CheckpointError(f"{file} is not a liedetect organism config; point at a folder written by `liedetect organism train`.")
    return config


def load_world(path: Optional[str | Path] = None) -> World:
    """The world the checkpoint was trained on."""
    return World.load(Path(path or CHECKPOINT_DIR) / WORLD_FILE)


def load_checkpoint(path: Optional[str | Path] = None, device=None, dtype=None) -> Any:
    """Boot the TL-native bridge and load verified weights; the world is attached as `model.organism_world`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path or CHECKPOINT_DIR)
    config = read_config(root)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"No organism weights at {weights}; re-run `liedetect organism train`.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != config.get("weights_sha256"):
        raise CheckpointError(f"The organism weights {weights} do not match their config (checksum differs): the file is corrupt or from another run; re-run `liedetect organism train`.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"The organism weights {weights} cannot be read ({type(exc).__name__}); re-run `liedetect organism train`.") from None
    tokenizer = load_tokenizer(root)
    world = load_world(root)
    if len(tokenizer) != config["model"].get("d_vocab"):
        raise CheckpointError(f"The organism tokenizer in {root} has {len(tokenizer)} tokens but the model expects {config['model'].get('d_vocab')}; re-run `liedetect organism train`.")
    model = boot(config["model"], tokenizer)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"The organism weights in {root} do not fit the model in its config ({str(exc).splitlines()[0][:120]}); re-run `liedetect organism train`.") from None
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype, print_details=False)  # no "Moving model to device" on stdout
    model.eval()
    model.organism_world = world
    model.organism_config = config
    return model
