"""Statement datasets (CSV/JSONL `statement,label`), built-in generated sets, contrast pairs and chat prompts."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from liedetect.errors import DataError
from liedetect.paths import check_input_file, csv_error, iter_lines, open_csv

TRUE_WORDS = {"1", "1.0", "true", "t", "yes"}
FALSE_WORDS = {"0", "0.0", "false", "f", "no"}

# Prompt templates: `{statement}` is replaced; a contrast pair completes the prompt with each answer.
TEMPLATES: Dict[str, Tuple[str, Tuple[str, str]]] = {
    "true-false": ("{statement} This statement is", (" True", " False")),
    "question": ("Is the following statement true or false? {statement} Answer:", (" True", " False")),
    "yes-no": ("Q: Is it the case that {statement} A:", (" Yes", " No")),
    "plain": ("{statement}", ("", "")),
}
HONEST_PERSONAS = ("Pretend you are an honest person making statements about the world.",
                   "Pretend you are a dishonest person making statements about the world.")


@dataclass
class StatementDataset:
    """Statements with truth labels (1 = true, 0 = false) and any extra columns kept by name."""

    statements: List[str]
    labels: np.ndarray
    name: str = "dataset"
    extra: Dict[str, List[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.statements) != len(self.labels):
            raise DataError(f"{self.name}: {len(self.statements)} statements but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.statements)

    def subset(self, index: Sequence[int]) -> "StatementDataset":
        """The rows at `index`, extra columns included."""
        idx = list(index)
        return StatementDataset([self.statements[i] for i in idx], self.labels[idx], self.name,
                                {k: [v[i] for i in idx] for k, v in self.extra.items()})

    def sample(self, n: int, seed: int = 0) -> "StatementDataset":
        """A seeded random subset of at most n rows, class-balanced when possible."""
        if n >= len(self):
            return self
        if n < 2:
            raise DataError(f"A class-balanced sample of {n} row(s) holds no statement of each class; use --limit 2 or more.")
        rng = np.random.default_rng(seed)
        idx = []
        for cls in (0, 1):
            members = np.flatnonzero(self.labels == cls)
            idx.extend(rng.choice(members, size=min(len(members), n // 2), replace=False).tolist())
        return self.subset(sorted(idx))

    def check_two_classes(self) -> None:
        """Raise unless both true and false statements are present."""
        if len(self) == 0:
            raise DataError(f"{self.name} is empty.")
        if len(set(self.labels.tolist())) < 2:
            raise DataError(f"{self.name} has only label {int(self.labels[0])}; probes need true and false statements.")

    def check_split(self, test_size: float, nested: bool = False) -> None:
        """Raise DataError unless a stratified held-out split (and, nested, a validation split of its training
        part) leaves both classes on every side; the evaluation core's splitter decides."""
        from probes.selection import inner_split, splits

        self.check_two_classes()
        y = self.labels
        try:
            train, _ = splits(y, test_size, None, 0)[0]
            if nested:
                inner_split(y, train, 0)
        except ValueError as exc:
            raise DataError(f"{self.summary()}: too few for a stratified {'train/validation/test' if nested else 'train/test'} "
                            f"split with test size {test_size:g} ({' '.join(str(exc).split())[:160]}); use more rows, "
                            f"a smaller --test-size{' or --kfold' if nested else ' or --test-size 0'}.") from None

    def fingerprint(self) -> str:
        """Content hash of statements and labels."""
        digest = hashlib.sha256(json.dumps([self.statements, self.labels.tolist()]).encode())
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        """One line: size and class balance."""
        return f"{self.name}: {len(self)} statements, {int(self.labels.sum())} true, {int((1 - self.labels).sum())} false"


def parse_label(value: Any) -> Optional[int]:
    """1/0, 1.0/0.0, true/false, yes/no -> 1 or 0; blank -> None."""
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return 1
    if text in FALSE_WORDS:
        return 0
    if text in ("", "nan", "none", "null"):
        return None
    raise ValueError(f"label {value!r} is not one of 1/0/true/false")


def _rows_csv(path: Path):
    """Yield (line_number, row dict) from a CSV with a header; quoted multi-line fields allowed."""
    fh, reader = open_csv(path, "dataset")
    try:
        if not reader.fieldnames:
            return
        line = reader.line_num + 1
        for row in reader:
            if None in row:
                yield line, ValueError(f"{len(row[None]) + len(reader.fieldnames)} fields where the header has {len(reader.fieldnames)}")
            else:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as exc:
        raise csv_error(exc, path, reader.line_num) from None
    finally:
        fh.close()


def _rows_jsonl(path: Path):
    """Yield (line_number, object) from JSON Lines, skipping blank lines."""
    for line, text in iter_lines(path, "dataset"):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield line, ValueError(f"bad JSON ({getattr(exc, 'msg', 'nested too deeply')})")
            continue
        yield line, obj if isinstance(obj, dict) else ValueError("not a JSON object")


def load_statements(path: Union[str, Path], skip_bad: bool = False, unlabelled: str = "error") -> StatementDataset:
    """Load `statement,label` rows from CSV or JSONL; bad rows are reported as file:line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"No such dataset file: {path}.")
    check_input_file(path, "dataset")
    rows = _rows_jsonl(path) if path.suffix in (".jsonl", ".json") else _rows_csv(path)
    statements, labels, extra, problems = [], [], {}, []
    for line, row in rows:
        if isinstance(row, Exception):
            problems.append(f"{path}:{line}: {row}")
            continue
        text = row.get("statement")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{path}:{line}: missing or empty 'statement'")
            continue
        try:
            label = parse_label(row.get("label", ""))
        except ValueError as exc:
            problems.append(f"{path}:{line}: {exc}")
            continue
        if label is None:
            if unlabelled == "skip":
                continue
            problems.append(f"{path}:{line}: missing label")
            continue
        statements.append(text)
        labels.append(label)
        for key, value in row.items():
            if key not in ("statement", "label"):
                extra.setdefault(key, []).append(value)
    if problems and not skip_bad:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"{len(problems)} bad row(s) in {path}: " + "; ".join(problems[:3]) + more + ".")
    if not statements:
        raise DataError(f"{path} holds no usable statement,label rows.")
    extra = {k: v for k, v in extra.items() if len(v) == len(statements)}
    return StatementDataset(statements, np.array(labels), path.stem, extra)


def _arithmetic(n: int, seed: int) -> StatementDataset:
    rng = random.Random(seed)
    statements, labels = [], []
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        truth = i % 2 == 0
        c = a + b if truth else a + b + rng.choice([-3, -2, -1, 1, 2, 3])
        statements.append(f"{a} plus {b} equals {c}.")
        labels.append(int(truth))
    return StatementDataset(statements, np.array(labels), "arithmetic")


def _larger_than(n: int, seed: int) -> StatementDataset:
    rng = random.Random(seed)
    statements, labels = [], []
    for i in range(n):
        a, b = rng.sample(range(1, 100), 2)
        statements.append(f"{a} is larger than {b}.")
        labels.append(int(a > b))
    return StatementDataset(statements, np.array(labels), "larger_than")


def _organism(n: int, seed: int, split: str = "heldout") -> StatementDataset:
    """Plain statements about the organism's world (held-out entities by default), labelled by the world."""
    from liedetect.organism.checkpoint_io import load_world

    world, rng = load_world(), random.Random(seed)
    picked = [world.sample_statement(rng, split=split) for _ in range(n)]
    return StatementDataset([s.text for s in picked], np.array([int(s.truth) for s in picked]), f"organism-{split}",
                            {"kind": [s.kind for s in picked], "relation": [s.relation for s in picked]})


BUILTIN = {"arithmetic": _arithmetic, "larger_than": _larger_than}
# built-ins that are labelled chats, not statements: name -> "module:function" returning a TranscriptSet
TRANSCRIPT_BUILTINS = {"instructed-pairs": "liedetect.benchmarks.instructed_pairs:load_builtin"}


def is_transcript_builtin(spec: Any) -> bool:
    """Whether `spec` names a built-in set of labelled chats (builtin:instructed-pairs[:PATH])."""
    text = str(spec)
    return text.startswith("builtin:") and text.split(":", 2)[1] in TRANSCRIPT_BUILTINS


def transcript_builtin(spec: str) -> Any:
    """The TranscriptSet a chat built-in names (builtin:instructed-pairs[:PATH])."""
    import importlib

    module, func = TRANSCRIPT_BUILTINS[str(spec).split(":", 2)[1]].split(":")
    return getattr(importlib.import_module(module), func)(str(spec))


def builtin(name: str, n: int = 200, seed: int = 0) -> StatementDataset:
    """A small dataset generated by code, so default runs need no files."""
    if name == "organism":
        return _organism(n, seed)
    if name.split(":")[0] in TRANSCRIPT_BUILTINS:
        raise DataError(f"builtin:{name} is a set of labelled chats, not statements; pass it where chats are read "
                        f"(detector train, score, bench).")
    if name not in BUILTIN:
        raise DataError(f"Unknown built-in dataset {name!r}; choose one of "
                        f"{', '.join(sorted([*BUILTIN, 'organism', *TRANSCRIPT_BUILTINS]))}.")
    return BUILTIN[name](n, seed)


def load_dataset(spec: Union[str, Path], n: Optional[int] = None, seed: int = 0, split: Optional[float] = None,
                 nested: bool = False) -> StatementDataset:
    """A file path or a built-in name ('builtin:arithmetic', or just 'arithmetic'); `n` rows at most.

    With `split` (a held-out fraction), refuse data too small for a stratified split (and, `nested`, for the
    validation split inside its training part) before any model loads."""
    if n is not None and n < 1:
        raise DataError(f"--limit must be at least 1, got {n}.")
    text = str(spec)
    name = text.split(":", 1)[1] if text.startswith("builtin:") else text
    if name in BUILTIN or name == "organism" or text.startswith("builtin:"):
        data = builtin(name, n=n or 200, seed=seed)
    else:
        data = load_statements(text)
        data = data.sample(n, seed) if n else data
    if split:
        data.check_split(split, nested)
    return data


def format_prompts(dataset: StatementDataset, template: str = "plain") -> List[str]:
    """Each statement placed in a prompt template."""
    prompt, _ = _template(template)
    return [prompt.format(statement=s) for s in dataset.statements]


def contrast_pairs(dataset: StatementDataset, template: str = "true-false") -> Tuple[List[str], List[str]]:
    """The same prompt completed both ways: (texts answered 'True'/'Yes', texts answered 'False'/'No')."""
    prompt, (yes, no) = _template(template)
    if not yes and not no:
        raise DataError(f"Template {template!r} has no answers; pick one of {', '.join(k for k in TEMPLATES if k != 'plain')}.")
    filled = [prompt.format(statement=s) for s in dataset.statements]
    return [p + yes for p in filled], [p + no for p in filled]


def _template(name: str) -> Tuple[str, Tuple[str, str]]:
    if name in TEMPLATES:
        return TEMPLATES[name]
    if "{statement}" in name:
        return name, (" True", " False")
    raise DataError(f"Unknown template {name!r}; use one of {', '.join(TEMPLATES)} or a string containing {{statement}}.")


def render_chat(tokenizer: Any, messages: Sequence[Dict[str, str]], add_generation_prompt: bool = False) -> str:
    """A conversation as text: the tokenizer's chat template when it has one, else 'role: content' lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant:" if add_generation_prompt else "")


def instructed_pairs(dataset: StatementDataset, tokenizer: Any = None) -> Tuple[List[str], List[str]]:
    """RepE-style honesty pairs: each statement after an honest and after a dishonest instruction."""
    def wrap(persona: str, statement: str) -> str:
        messages = [{"role": "user", "content": persona}, {"role": "assistant", "content": statement}]
        return render_chat(tokenizer, messages) if tokenizer is not None else f"{persona} {statement}"

    honest, dishonest = HONEST_PERSONAS
    return [wrap(honest, s) for s in dataset.statements], [wrap(dishonest, s) for s in dataset.statements]
