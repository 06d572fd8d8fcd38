"""How long `liedetect --help` (and `liedetect COMMAND --help`) takes, against starting Python alone.

    python benchmarks/bench_cli.py [--repeats 7] [--out benchmarks/results/cli.json]

Each command runs as a fresh process (what a user waits for), interleaved with the baseline
`python -c pass`, median of the repeats. Target: under 1 s. The CLI imports torch, transformers and
scikit-learn only inside the command that needs them (tests/test_cli.py checks that `import cli` loads none).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from liedetect.run_record import write_result
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"python -c pass": [sys.executable, "-c", "pass"],
            "liedetect --help": [sys.executable, "-m", "cli", "--help"],
            "liedetect score --help": [sys.executable, "-m", "cli", "score", "--help"],
            "liedetect sweep --help": [sys.executable, "-m", "cli", "sweep", "--help"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli.json"))
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    for name, m in med.items():
        print(f"{name:<26} median {m:.3f} s")
    doc = {"benchmark": "cli_help", "command": "python benchmarks/bench_cli.py " + " ".join(sys.argv[1:]),
           "repeats": args.repeats, "seconds": times, "median_s": med,
           "help_over_bare_python": med["liedetect --help"] / med["python -c pass"],
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "load_average": os.getloadavg(), "note": "shared machine; other jobs ran"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(Path(args.out), doc, indent=1)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
