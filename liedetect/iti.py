"""Inference-Time Intervention (Li et al., NeurIPS 2023): per-head truth probes and a shift of the chosen heads.

Each attention head's output before the output projection (TransformerLens ``blocks.L.attn.hook_z``,
[batch, seq, n_heads, d_head]; with grouped-query attention there is one per query head) is read at the
answer's last token; a logistic probe per head separates true from false answers (``probes.heads``); the K
heads with the best validation accuracy are shifted along their mass-mean truthful direction by
alpha x (std of the activations along it), at every position (or only generated ones) inside a ``with`` block.
MC1 / MC2 follow TruthfulQA: MC1 = the best answer out-scores every incorrect one (summed log-prob);
MC2 = the probability mass of the correct answers among all, normalised.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from liedetect.activations import encode, pad_batch
from liedetect.errors import CheckpointError, DataError, LayerError, SteeringError
from liedetect.paths import read_csv_rows
from probes.heads import head_accuracies, mass_mean_directions, top_heads

PROMPT = "Q: {question}\nA:"
ITI_FORMAT = "liedetect.iti/1"
ITI_FILES = ("heads.json", "tensors.safetensors")
POSITIONS = ("all", "generated")


def head_hook(model: Any, layer: int) -> str:
    """The per-head output hook of a layer, after checking the model has it."""
    if not 0 <= layer < model.cfg.n_layers:
        raise LayerError(f"Layer {layer} does not exist: this model has {model.cfg.n_layers} layers.")
    name = f"blocks.{layer}.attn.hook_z"
    if name not in model.hook_dict:
        raise LayerError(f"This model exposes no per-head attention output ({name}); ITI needs an attention model.")
    return name


# ---------------------------------------------------------------- data


@dataclass
class TQAItem:
    """One TruthfulQA question with its best, correct and incorrect answers."""

    question: str
    best: str
    correct: List[str]
    incorrect: List[str]


def _split_answers(text: str) -> List[str]:
    return [a.strip() for a in (text or "").split(";") if a.strip()]


def load_truthfulqa(path: Union[str, Path], limit: Optional[int] = None) -> List[TQAItem]:
    """Read TruthfulQA.csv (Question, Best Answer, Correct Answers, Incorrect Answers; answers split on ';')."""
    need = ["Question", "Best Answer", "Correct Answers", "Incorrect Answers"]
    items = []
    for row in read_csv_rows(path, need, "TruthfulQA", "use TruthfulQA.csv's header"):
        best = row["Best Answer"].strip()
        correct = _split_answers(row["Correct Answers"])
        if best and best not in correct:
            correct = [best] + correct
        incorrect = _split_answers(row["Incorrect Answers"])
        if row["Question"].strip() and best and incorrect:
            items.append(TQAItem(row["Question"].strip(), best, correct, incorrect))
    if len(items) < 2:
        raise DataError(f"{path} holds {len(items)} usable questions; ITI needs at least 2.")
    return items[:limit] if limit else items


def two_fold(n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Split n questions into two halves at random (the paper's two-fold cross-validation)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def answer_texts(items: Sequence[TQAItem], per_side: int = 2, template: str = PROMPT) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Question + answer texts (up to `per_side` correct and incorrect answers each), labels (1 = true), question ids."""
    texts, labels, groups = [], [], []
    for q, item in enumerate(items):
        prompt = template.format(question=item.question)
        for label, answers in ((1, item.correct), (0, item.incorrect)):
            for answer in answers[:per_side]:
                texts.append(f"{prompt} {answer}")
                labels.append(label)
                groups.append(q)
    return texts, np.asarray(labels), np.asarray(groups)


# ---------------------------------------------------------------- capture


def capture_heads(model: Any, texts: Sequence[str], batch_size: int = 16, bos: Optional[str] = None) -> torch.Tensor:
    """Every head's output at each text's last token: [n, n_layers, n_heads, d_head] (float32, CPU)."""
    if not texts:
        raise DataError("No texts to capture.")
    names = [head_hook(model, layer) for layer in range(model.cfg.n_layers)]
    enc = encode(model, texts, bos=bos)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = pad_batch(enc.ids[i:i + batch_size], pad, "right")
        last = mask.sum(1) - 1
        store: Dict[int, torch.Tensor] = {}

        def keep(layer: int):
            def fn(z: torch.Tensor, hook: Any) -> torch.Tensor:
                store[layer] = z[torch.arange(z.shape[0]), last.to(z.device)].float().cpu()
                return z
            return fn

        with torch.inference_mode():
            model.run_with_hooks(ids.to(device), attention_mask=mask.to(device), return_type=None,
                                 fwd_hooks=[(name, keep(layer)) for layer, name in enumerate(names)])
        out.append(torch.stack([store[layer] for layer in range(len(names))], dim=1))
    return torch.cat(out)


# ---------------------------------------------------------------- the intervention


@dataclass
class ITIIntervention:
    """K heads, each with a unit truthful direction [d_head] and the std of activations along it."""

    heads: List[Tuple[int, int]]
    directions: torch.Tensor  # [K, d_head]
    stds: torch.Tensor  # [K]
    alpha: float = 15.0
    accuracies: Optional[np.ndarray] = None  # [n_layers, n_heads] validation accuracy of every head's probe
    meta: Dict[str, Any] = field(default_factory=dict)

    def shifts(self, n_heads: int, alpha: Optional[float] = None) -> Dict[int, torch.Tensor]:
        """Per layer, the [n_heads, d_head] vector added to hook_z: alpha x std x direction on the chosen heads."""
        a = self.alpha if alpha is None else float(alpha)
        out: Dict[int, torch.Tensor] = {}
        for (layer, head), d, s in zip(self.heads, self.directions, self.stds):
            if not 0 <= head < n_heads:
                raise SteeringError(f"Head {head} does not exist: this model has {n_heads} heads per layer.")
            shift = out.setdefault(layer, torch.zeros(n_heads, self.directions.shape[1]))
            shift[head] += a * float(s) * d.float()
        return out

    @contextlib.contextmanager
    def apply(self, model: Any, alpha: Optional[float] = None, positions: str = "all",
              prompt_len: Optional[int] = None) -> Iterator["ITIIntervention"]:
        """Shift the chosen heads inside a `with` block (every position, or only generated tokens); hooks come off on exit."""
        from liedetect.steering.hooks import _Tracker

        if positions not in POSITIONS:
            raise SteeringError(f"Unknown positions {positions!r}; use one of {', '.join(POSITIONS)}.")
        d_head = getattr(model.cfg, "d_head", None)
        if d_head != self.directions.shape[1]:
            raise SteeringError(f"The intervention's heads are {self.directions.shape[1]} wide but this model's are {d_head}; "
                                f"fit it on this model.")
        device = next(model.parameters()).device
        shifts = {layer: v.to(device) for layer, v in self.shifts(model.cfg.n_heads, alpha).items()}
        tracker = _Tracker(prompt_len) if positions == "generated" else None

        def make(vec: torch.Tensor):
            def fn(z: torch.Tensor, hook: Any) -> torch.Tensor:
                if tracker is None:
                    return z + vec.to(z.dtype)
                cut = tracker.split(z.shape[1])
                return z if cut == z.shape[1] else torch.cat([z[:, :cut], z[:, cut:] + vec.to(z.dtype)], dim=1)
            return fn

        hooks = [(head_hook(model, layer), make(vec)) for layer, vec in shifts.items()]
        with contextlib.ExitStack() as stack:
            if tracker is not None:
                handle = model.register_forward_pre_hook(tracker.pre_hook, with_kwargs=True)
                stack.callback(handle.remove)
            stack.enter_context(model.hooks(fwd_hooks=hooks))
            yield self

    def save(self, path: Union[str, Path]) -> Path:
        """A folder written whole or not at all: heads.json (heads, alpha, meta) + tensors.safetensors (directions,
        stds, accuracies) + manifest.json."""
        from liedetect.artifacts import check_artifact_target, write_artifact_dir

        path = Path(path)
        check_artifact_target(path, ITI_FILES, "an ITI intervention")
        if not np.isfinite(self.alpha):
            raise SteeringError(f"alpha must be a finite number, got {self.alpha}.")
        tensors = {"directions": self.directions.float().contiguous(), "stds": self.stds.float().contiguous()}
        if self.accuracies is not None:
            tensors["accuracies"] = torch.as_tensor(self.accuracies, dtype=torch.float32).contiguous()
        head = json.dumps({"format": ITI_FORMAT, "heads": [list(map(int, h)) for h in self.heads], "alpha": self.alpha,
                           "meta": self.meta}, indent=1) + "\n"

        def write(tmp: Path) -> None:
            save_file(tensors, str(tmp / "tensors.safetensors"))
            (tmp / "heads.json").write_text(head, encoding="utf-8")

        return write_artifact_dir(path, write, ITI_FORMAT, 1)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ITIIntervention":
        """Read a folder written by `save`, after checking its manifest, heads.json and tensors."""
        from liedetect.artifacts import verify_manifest
        from liedetect.schemas import check_iti_heads

        path = Path(path)
        if not (path / "heads.json").is_file() or not (path / "tensors.safetensors").is_file():
            raise CheckpointError(f"{path} is not an ITI intervention folder (it needs heads.json and "
                                  f"tensors.safetensors); write one with `liedetect iti fit`.")
        verify_manifest(path, ITI_FORMAT, 1)
        try:
            head = json.loads((path / "heads.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}/heads.json is not valid JSON ({type(exc).__name__}); write it again with "
                                  f"`liedetect iti fit`.") from None
        check_iti_heads(head, path / "heads.json", ITI_FORMAT)
        try:
            tensors = load_file(str(path / "tensors.safetensors"))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types (a truncated file)
            raise CheckpointError(f"{path}/tensors.safetensors could not be read as safetensors "
                                  f"({type(exc).__name__}); write the intervention again with `liedetect iti "
                                  f"fit`.") from None
        k = len(head["heads"])
        dirs, stds = tensors.get("directions"), tensors.get("stds")
        if dirs is None or stds is None or dirs.ndim != 2 or dirs.shape[0] != k or tuple(stds.shape) != (k,):
            raise CheckpointError(f"{path}/tensors.safetensors does not hold directions [{k}, d_head] and stds [{k}] "
                                  f"for the {k} heads of heads.json: the files do not belong together; write it again.")
        if not bool(torch.isfinite(dirs).all()) or not bool(torch.isfinite(stds).all()):
            raise CheckpointError(f"{path}/tensors.safetensors holds NaN or infinite values; fit the intervention "
                                  f"again.")
        acc = tensors.get("accuracies")
        return cls([tuple(h) for h in head["heads"]], dirs, stds, float(head["alpha"]),
                   None if acc is None else acc.numpy(), head.get("meta") or {})


def fit_iti(acts: torch.Tensor, labels: Any, groups: Any, k: int = 16, alpha: float = 15.0, val_fraction: float = 0.2,
            seed: int = 0) -> ITIIntervention:
    """Probe every head on one part of the questions, rank on the rest, keep the top k with mass-mean directions."""
    from probes.errors import ProbeError
    from probes.selection import holdout_groups

    labels, groups = np.asarray(labels), np.asarray(groups)
    uniq = np.unique(groups)
    try:
        _, val = holdout_groups(groups, val_fraction, seed, what="validating head probes on held-out questions")
    except ProbeError as exc:
        raise DataError(f"ITI needs answers to at least two questions: {exc}") from None
    n_val = len(np.unique(groups[val]))
    acc = head_accuracies(acts, labels, np.flatnonzero(~val), np.flatnonzero(val), seed=seed)
    heads = top_heads(acc, k)
    dirs, stds = mass_mean_directions(acts, labels, heads)
    return ITIIntervention(heads, torch.tensor(dirs, dtype=torch.float32), torch.tensor(stds, dtype=torch.float32), alpha, acc,
                           {"n_answers": int(len(labels)), "n_questions": int(len(uniq)), "val_questions": int(n_val)})


# ---------------------------------------------------------------- evaluation


def _token_logprobs(model: Any, prompts: Sequence[str], completions: Sequence[str], batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Summed log-prob of each completion's tokens after its prompt, and how many tokens were scored."""
    full = encode(model, [p + c for p, c in zip(prompts, completions)])
    uniq = sorted({p for p in prompts if p})
    lengths = dict(zip(uniq, (len(r) for r in encode(model, uniq).ids))) if uniq else {}
    starts = [lengths.get(p, 0) for p in prompts]
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out, counts = np.zeros(len(prompts)), np.zeros(len(prompts), dtype=int)
    for i in range(0, len(prompts), batch_size):
        rows = full.ids[i:i + batch_size]
        ids, mask = pad_batch(rows, pad, "right")
        with torch.inference_mode():
            logp = torch.log_softmax(model(ids.to(device), attention_mask=mask.to(device)).float(), -1).cpu()
        for j, row in enumerate(rows):
            s = max(1, min(starts[i + j], len(row) - 1))  # the first token has no prediction
            pos = torch.arange(s, len(row))
            out[i + j] = float(logp[j, pos - 1, torch.tensor(row)[pos]].sum())
            counts[i + j] = len(pos)
    return out, counts


def mc_scores(model: Any, items: Sequence[TQAItem], batch_size: int = 16, template: str = PROMPT,
              max_answers: Optional[int] = None, per_question: bool = False) -> Dict[str, Any]:
    """TruthfulQA MC1 (best answer beats every incorrect one) and MC2 (normalised mass on the correct answers).

    `max_answers` keeps only the first few correct and incorrect answers per question (cheaper, noted in results);
    `per_question` adds the lists `mc1_each` / `mc2_each` (for paired comparisons)."""
    prompts, comps, owner, kind = [], [], [], []
    for q, item in enumerate(items):
        prompt = template.format(question=item.question)
        cut = slice(0, max_answers)
        correct = [item.best] + [a for a in item.correct if a != item.best]
        for k, answers in ((0, [item.best]), (1, correct[cut]), (2, item.incorrect[cut])):
            for a in answers:
                prompts.append(prompt)
                comps.append(" " + a)
                owner.append(q)
                kind.append(k)
    lp = _token_logprobs(model, prompts, comps, batch_size)[0]
    owner, kind = np.asarray(owner), np.asarray(kind)
    mc1, mc2 = [], []
    for q in range(len(items)):
        best, cor, inc = (lp[(owner == q) & (kind == k)] for k in (0, 1, 2))
        mc1.append(float(best[0] > inc.max()))
        p_cor, p_inc = np.exp(cor - max(cor.max(), inc.max())), np.exp(inc - max(cor.max(), inc.max()))
        mc2.append(float(p_cor.sum() / (p_cor.sum() + p_inc.sum())))
    out: Dict[str, Any] = {"mc1": float(np.mean(mc1)), "mc2": float(np.mean(mc2)), "n_questions": len(items)}
    if per_question:
        out.update(mc1_each=mc1, mc2_each=mc2)
    return out


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 2000, seed: int = 0) -> Dict[str, float]:
    """Mean of after - before over questions with a 95% percentile bootstrap interval (questions resampled)."""
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(1)
    return {"delta": float(diff.mean()), "lo": float(np.quantile(means, 0.025)), "hi": float(np.quantile(means, 0.975))}


def lm_loss(model: Any, texts: Sequence[str], batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats per token) over texts."""
    if not texts:
        raise DataError("No texts to measure the language-model loss on.")
    lp, counts = _token_logprobs(model, [""] * len(texts), list(texts), batch_size)
    return float(-lp.sum() / max(counts.sum(), 1))


def plot_head_accuracies(acc: np.ndarray, path: Union[str, Path], title: str = "per-head probe accuracy") -> Path:
    """The paper's picture: validation accuracy of each head's probe, layer x head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, acc.shape[1] * 0.5 + 2), max(3, acc.shape[0] * 0.22 + 1)))
    im = ax.imshow(acc, aspect="auto", origin="lower", cmap="viridis", vmin=0.5, vmax=max(0.51, float(acc.max())))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="validation accuracy")
    fig.tight_layout()
    from liedetect.artifacts import write_file_atomic

    try:
        return write_file_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
