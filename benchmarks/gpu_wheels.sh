#!/usr/bin/env bash
# Wheels (Python 3.12, x86-64) of the locked packages a bare GPU image lacks, for benchmarks/gpu_check.py.
# Run here, where pip reaches the registry:   bash benchmarks/gpu_wheels.sh .whl
# There (no network), before the check:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json
# Versions are the lock's (requirements/lock.txt); torch, numpy, accelerate, safetensors, einops, jaxtyping,
# rich, tqdm, pandas and sentencepiece come with the GPU image. Prepared but not yet run on a GPU machine.
set -euo pipefail
dest="${1:-.whl}"
lock="$(dirname "$0")/../requirements/lock.txt"
pin() { grep -i "^$1==" "$lock" | sed 's/ .*//'; }
pkgs=(transformer-lens transformers tokenizers huggingface-hub beartype fancy-einsum typeguard datasets dill
      multiprocess transformers-stream-generator)
mkdir -p "$dest"
for p in "${pkgs[@]}"; do
  spec="$(pin "$p")"
  [ -n "$spec" ] || { echo "not in the lock: $p" >&2; exit 2; }
  python3 -m pip download -q --no-deps --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --only-binary=:all: -d "$dest" "$spec" ||
  python3 -m pip download -q --no-deps --no-binary=:none: -d "$dest" "$spec"  # pure-Python sdists: build there
done
du -sh "$dest"
