"""Black-box lie detection by follow-up questions (Pacchiardi et al., ICLR 2024).

After a suspected answer, each follow-up yes/no question is asked in its own branch of the conversation
(``[..., user: question, assistant: answer, user: follow-up]``) and the model's next-token log-odds of
"yes" over "no" is read. The vector of log-odds feeds a logistic regression fitted on known lies and truths.

Only next-token log-probabilities are needed, so any model fits: a *log-prob function* takes a list of
conversations (lists of ``{"role", "content"}`` dicts) and returns, per conversation, a mapping from
next-token text to log-probability (an API's top log-probs will do; tokens it lacks count as ``floor``).
``LocalLogProbs`` is the built-in one: the local model, the tokenizer's chat template (or plain text joined
by spaces for a model without one, e.g. the organism), the log-probs of the answer words it is asked about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from liedetect.errors import DataError
from liedetect.paths import check_encodable, read_csv_rows
from liedetect.schemas import check_blackbox
from probes.metrics import auroc, bootstrap_ci, recall_at_fpr

Conversation = List[Dict[str, str]]
LogProbFn = Callable[[Sequence[Conversation]], Sequence[Mapping[str, float]]]
YES = ("Yes", " Yes", "yes", " yes")
NO = ("No", " No", "no", " no")
FLOOR = -30.0
BLACKBOX_FORMAT = "liedetect.blackbox/1"


# ---------------------------------------------------------------- data


def load_followups(path: Union[str, Path], limit: Optional[int] = None) -> List[str]:
    """The follow-up questions of probes.csv (column `probe`), in file order; `limit` keeps the first few."""
    rows = read_csv_rows(path, ["probe"], "follow-up question", "a follow-up file needs the header probe_type,probe "
                                                                     "(pacchiardi/probes.csv)")
    questions = [row["probe"].strip() for row in rows if (row.get("probe") or "").strip()]
    if not questions:
        raise DataError(f"{path} holds no follow-up questions.")
    return questions[:limit] if limit else questions


@dataclass
class QA:
    """A question with its true answer and a false one."""

    question: str
    answer: str
    false_answer: str


def load_questions(path: Union[str, Path], limit: Optional[int] = None) -> List[QA]:
    """questions_1000_all.json: {id: {question, answer, false_answer, ...}} -> QA items (incomplete entries skipped)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"No question file at {path}; give the path of pacchiardi/questions_1000_all.json.") from None
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}).") from None
    rows = list(raw.items()) if isinstance(raw, dict) else list(enumerate(raw)) if isinstance(raw, list) else []
    check_encodable(((key, str(r.get(k) or "")) for key, r in rows if isinstance(r, dict)
                     for k in ("question", "answer", "false_answer")), path, "entry")
    rows = [r for _, r in rows]
    keys = ("question", "answer", "false_answer")
    items = [QA(r["question"].strip(), r["answer"].strip(), r["false_answer"].strip()) for r in rows
             if isinstance(r, dict) and all(isinstance(r.get(k), str) and r[k].strip() for k in keys)]
    if not items:
        raise DataError(f"{path} holds no entries with question, answer and false_answer.")
    return items[:limit] if limit else items


def inserted_transcripts(items: Sequence[QA]) -> Tuple[List[Conversation], np.ndarray, np.ndarray]:
    """Per question one honest and one lying transcript, the false answer written into the assistant turn.

    Returns conversations, labels (1 = lie) and group ids (the question index: split by it)."""
    convs, labels, groups = [], [], []
    for q, item in enumerate(items):
        for lie, answer in ((0, item.answer), (1, item.false_answer)):
            convs.append([{"role": "user", "content": item.question}, {"role": "assistant", "content": answer}])
            labels.append(lie)
            groups.append(q)
    return convs, np.asarray(labels), np.asarray(groups)


# ---------------------------------------------------------------- log-probs


class HFCausalLM:
    """A Hugging Face causal LM and its tokenizer, callable the way `LocalLogProbs` calls a TransformerBridge, so the
    follow-up detector runs on a plain Hugging Face model (no hook points: less work per token on CPU)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.hf, self.tokenizer = model.eval(), tokenizer

    def parameters(self):
        return self.hf.parameters()

    def __call__(self, ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, past_key_values: Any = None,
                 return_type: str = "logits", use_cache: bool = False) -> Any:
        out = self.hf(input_ids=ids, attention_mask=attention_mask, past_key_values=past_key_values,
                      use_cache=use_cache or past_key_values is not None)
        return (out.logits, out.past_key_values) if return_type == "logits_and_cache" else out.logits


class LocalLogProbs:
    """The built-in log-prob function: the local model's next-token log-probs of the answer words."""

    def __init__(self, model: Any, words: Sequence[str] = YES + NO, batch_size: int = 32, share_prefix: bool = True) -> None:
        self.model, self.batch_size, self.share_prefix = model, batch_size, share_prefix
        tok = model.tokenizer
        self.ids: Dict[str, int] = {}
        for w in words:
            ids = tok.encode(w, add_special_tokens=False)
            if len(ids) == 1 and ids[0] != getattr(tok, "unk_token_id", None):
                self.ids[w] = int(ids[0])
        if not self.ids:
            raise DataError(f"None of the answer words {list(words)} is a single token for this model.")

    def render(self, conv: Conversation) -> str:
        """The text the model reads: its chat template with the assistant turn opened, else contents joined by spaces."""
        tok = self.model.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        return " ".join(m["content"] for m in conv)

    def tokens(self, conv: Conversation) -> List[int]:
        """Token ids of a rendered conversation (a chat template holds its own special tokens)."""
        tok = self.model.tokenizer
        templated = bool(getattr(tok, "chat_template", None))
        return list(tok.encode(self.render(conv), add_special_tokens=not templated))

    def check(self, convs: Sequence[Conversation]) -> List[List[int]]:
        """The token ids of each conversation, after checking each fits the model's context (one DataError)."""
        rows = [self.tokens(c) for c in convs]
        cfg = getattr(self.model, "cfg", None)  # a bridge; a Hugging Face model (HFCausalLM) has `hf.config`
        n_ctx = (getattr(cfg, "n_ctx", None) if cfg is not None else
                 getattr(getattr(getattr(self.model, "hf", None), "config", None), "max_position_embeddings", None))
        longest = max((len(r) for r in rows), default=0)
        if n_ctx and longest > n_ctx:
            raise DataError(f"A conversation with its follow-up question is {longest} tokens, more than this model's "
                            f"context of {n_ctx}; use shorter questions or fewer turns, or a model with a longer "
                            f"context.")
        return rows

    def __call__(self, convs: Sequence[Conversation]) -> List[Dict[str, float]]:
        rows = self.check(convs)
        out: List[Optional[Dict[str, float]]] = [None] * len(rows)
        groups: Dict[str, List[int]] = {}
        for i, conv in enumerate(convs):  # branches of one transcript share everything but the last message
            key = json.dumps(conv[:-1], sort_keys=True) if self.share_prefix else str(i)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                logits = self._last_logits([rows[i] for i in chunk])
                for i, row in zip(chunk, torch.log_softmax(logits, -1)):
                    out[i] = {w: float(row[t]) for w, t in self.ids.items()}
        return out  # type: ignore[return-value]

    def _last_logits(self, rows: List[List[int]]) -> torch.Tensor:
        """Next-token logits after each row; a token prefix common to all rows runs once and its KV cache is reused."""
        import copy

        from liedetect.activations import pad_batch

        model, tok = self.model, self.model.tokenizer
        device = next(model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        common = 0
        if self.share_prefix and len(rows) > 1:
            shortest = min(len(r) for r in rows)
            while common < shortest - 1 and all(r[common] == rows[0][common] for r in rows):
                common += 1
        with torch.inference_mode():
            cache = None
            if common >= 8:  # worth sharing; models whose forward returns no HF cache take the plain path
                prefix = torch.tensor([rows[0][:common]], device=device)
                cache = model(prefix, return_type="logits_and_cache", use_cache=True)[1]
            if cache is None:
                ids, mask = pad_batch(rows, pad, "right")
                logits = model(ids.to(device), attention_mask=mask.to(device))
                return logits[torch.arange(len(rows)), mask.sum(1) - 1].float().cpu()
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(len(rows))
            ids, mask = pad_batch([r[common:] for r in rows], pad, "right")
            full_mask = torch.cat([torch.ones(len(rows), common, dtype=mask.dtype), mask], dim=1)
            logits = model(ids.to(device), attention_mask=full_mask.to(device), past_key_values=cache)
            return logits[torch.arange(len(rows)), mask.sum(1) - 1].float().cpu()


def log_odds(logprobs: Mapping[str, float], yes: Sequence[str] = YES, no: Sequence[str] = NO, floor: float = FLOOR) -> float:
    """log P(yes-like) - log P(no-like) from one next-token mapping (missing words count as `floor`)."""
    def lse(words):
        vals = np.array([logprobs.get(w, floor) for w in words], dtype=np.float64)
        return float(np.logaddexp.reduce(vals))
    return lse(yes) - lse(no)


def followup_features(logprob_fn: LogProbFn, transcripts: Sequence[Conversation], followups: Sequence[str],
                      yes: Sequence[str] = YES, no: Sequence[str] = NO, chunk: int = 256,
                      progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """[n_transcripts, n_followups] log-odds of yes over no, each follow-up asked in its own branch."""
    if not followups:
        raise DataError("No follow-up questions to ask.")
    branches = [list(t) + [{"role": "user", "content": q}] for t in transcripts for q in followups]
    check = getattr(logprob_fn, "check", None)
    if check is not None:  # every branch fits before any is run
        check(branches)
    values: List[float] = []
    for i in range(0, len(branches), chunk):
        got = logprob_fn(branches[i:i + chunk])
        if len(got) != len(branches[i:i + chunk]):
            raise DataError(f"The log-prob function returned {len(got)} results for {len(branches[i:i + chunk])} prompts.")
        values.extend(log_odds(g, yes, no) for g in got)
        if progress:
            progress(min(i + chunk, len(branches)), len(branches))
    return np.asarray(values).reshape(len(transcripts), len(followups))


# ---------------------------------------------------------------- the detector


@dataclass
class FollowupDetector:
    """Logistic regression on follow-up log-odds; `score` is P(lie)."""

    followups: List[str]
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, lies: Any, followups: Sequence[str], C: float = 1.0) -> "FollowupDetector":
        x, y = np.asarray(features, dtype=np.float64), np.asarray(lies).astype(int)
        if x.ndim != 2 or x.shape[1] != len(followups) or len(x) != len(y):
            raise DataError(f"Features {x.shape} do not match {len(y)} labels and {len(followups)} follow-up questions.")
        if len(np.unique(y)) < 2:
            raise DataError("Training needs both lies and truths.")
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        pipe.fit(x, y)
        sc, lr = pipe[0], pipe[1]
        return cls(list(followups), lr.coef_[0].copy(), float(lr.intercept_[0]), sc.mean_.copy(), sc.scale_.copy())

    def score(self, features: np.ndarray) -> np.ndarray:
        """P(lie) for each row of follow-up log-odds."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def save(self, path: Union[str, Path]) -> Path:
        """JSON (written whole or not at all): the follow-up questions and the fitted numbers."""
        from liedetect.artifacts import write_file_atomic

        doc = {"format": BLACKBOX_FORMAT, "followups": self.followups, "coef": self.coef.tolist(),
               "intercept": self.intercept, "mean": self.mean.tolist(), "scale": self.scale.tolist()}
        check_blackbox(doc, "this black-box detector", BLACKBOX_FORMAT)  # never save what load refuses
        return write_file_atomic(Path(path), json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "FollowupDetector":
        """Read a detector JSON written by `save`, after checking its schema (sizes match, numbers finite)."""
        from liedetect.errors import CheckpointError
        from liedetect.paths import check_input_file, read_text

        check_input_file(path, "black-box detector")
        try:
            d = json.loads(read_text(path, "black-box detector"))
        except ValueError as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}); write a detector with `liedetect blackbox "
                                  f"fit`.") from None
        check_blackbox(d, path, BLACKBOX_FORMAT)
        return cls(list(d["followups"]), np.array(d["coef"], dtype=np.float64), float(d["intercept"]),
                   np.array(d["mean"], dtype=np.float64), np.array(d["scale"], dtype=np.float64))


def split_by_group(groups: Any, test_fraction: float = 0.5, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Boolean train / test masks with every group (question) on one side only."""
    from probes.errors import ProbeError
    from probes.selection import holdout_groups

    try:
        return holdout_groups(groups, test_fraction, seed, what="holding questions out")
    except ProbeError as exc:
        raise DataError(str(exc)) from None


def detection_report(lies: Any, scores: Any, n_boot: int = 1000, seed: int = 0) -> Dict[str, float]:
    """AUROC with a 95% bootstrap interval and recall at 1% FPR (lies are the positives)."""
    y, s = np.asarray(lies).astype(int), np.asarray(scores, dtype=np.float64)
    lo, hi = bootstrap_ci(auroc, y, s, n_boot=n_boot, seed=seed)
    recall, threshold = recall_at_fpr(s[y == 0], s[y == 1], 0.01)
    return {"auroc": auroc(y, s), "auroc_lo": lo, "auroc_hi": hi, "recall_at_1pct_fpr": recall,
            "threshold_at_1pct_fpr": threshold, "n_lies": int(y.sum()), "n_truths": int((1 - y).sum())}
