"""The layout rules, checked on the source (issue #12): no import circle, small modules, one home per concept.

Run it as a script to see the import graph's strongly connected components and the largest modules:
``python tests/test_architecture.py``.

An import is an edge to the module it names (``from a.b import c`` names ``a.b.c`` when that is a module,
else ``a.b``); every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("liedetect", "probes")
MAX_LINES = 400


def module_files() -> Dict[str, Path]:
    """Dotted module name -> file, for every module of the packages and cli.py."""
    out = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: Set[str]) -> str | None:
    """The longest known module that `name` is or lies inside."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in known:
            return candidate
    return None


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The known modules that module `name` imports anywhere in its source."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            hit = _resolve(t, known)
            if hit is not None and hit != name:
                out.add(hit)
    return out


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the modules of this repository it imports."""
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def line_counts() -> Dict[str, int]:
    """Lines per module under the packages, largest first."""
    files = {n: p for n, p in module_files().items() if n != "cli"}
    counts = {n: len(p.read_text().splitlines()) for n, p in files.items()}
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def files_containing(pattern: str) -> List[str]:
    """Repository-relative paths of package modules and cli.py whose source matches `pattern`."""
    return sorted(str(p.relative_to(ROOT)) for p in module_files().values() if re.search(pattern, p.read_text()))


# ---------------------------------------------------------------- the rules


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_400_lines():
    big = {n: c for n, c in line_counts().items() if c > MAX_LINES}
    assert big == {}


def test_probes_never_imports_liedetect_or_cli():
    graph = import_graph()
    bad = {n: sorted(t for t in deps if not t.startswith("probes")) for n, deps in graph.items() if n.startswith("probes")}
    assert {n: d for n, d in bad.items() if d} == {}


def test_one_home_for_detection_metrics():
    assert files_containing(r"roc_auc_score|sklearn\.metrics") == ["probes/metrics.py"]


def test_one_load_probe():
    assert files_containing(r"def load_probe\b") == ["liedetect/probe_io.py"]
    assert len(re.findall(r"def load_probe\b", (ROOT / "liedetect" / "probe_io.py").read_text())) == 1


def test_package_never_names_the_shared_folder():
    assert files_containing(r"\.\./shared|[\"']shared[\"']") == []


def tree_files_containing(pattern: str) -> List[str]:
    """Like files_containing, over the packages, cli.py, experiments/ and benchmarks/."""
    scripts = [*(ROOT / "experiments").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    found = files_containing(pattern)
    found += [str(p.relative_to(ROOT)) for p in scripts if re.search(pattern, p.read_text())]
    return sorted(found)


# an outside reference on purpose: plain scikit-learn cross-validation beside liedetect's numbers
REFERENCE_SCRIPTS = ["experiments/lr_parity.py", "experiments/minilm_sweep.py"]


def test_one_evaluation_core():
    # one layer selection, one group-aware splitter, one choice of C: probes/selection.py
    assert tree_files_containing(r"def select_layer\b") == ["probes/selection.py"]
    assert tree_files_containing(r"def (choose_C|splits|inner_split|holdout_groups)\b") == ["probes/selection.py"]
    splitters = r"StratifiedGroupKFold|GroupKFold|StratifiedKFold|train_test_split|GroupShuffleSplit|\bKFold\("
    assert tree_files_containing(splitters) == sorted(["probes/selection.py", *REFERENCE_SCRIPTS])
    # choosing a layer by hand: max over layers by a score, or an argmax of per-layer accuracies
    by_hand = r"max\(\w*layers?\w*, key=|argmax\(\w*acc|max\(by_layer|max\(val_auc"
    assert tree_files_containing(by_hand) == []


if __name__ == "__main__":
    graph = import_graph()
    found = cycles(graph)
    print(f"{len(graph)} modules, {sum(len(v) for v in graph.values())} import edges, "
          f"{len(found)} import circle(s){': ' if found else ''}")
    for comp in found:
        print("  circle:", " <-> ".join(comp))
    print("largest modules:", ", ".join(f"{n} {c}" for n, c in list(line_counts().items())[:8]))
    print("roc_auc_score / sklearn.metrics in:", files_containing(r"roc_auc_score|sklearn\.metrics"))
    print("def load_probe in:", files_containing(r"def load_probe\b"))
