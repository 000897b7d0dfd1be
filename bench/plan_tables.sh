#!/usr/bin/env bash
# `s1kit train --plan` for the three presets on Qwen2.5-32B (16 and 8 x 80 GB) and Qwen2.5-7B / 1.5B
# (1 x 80 GB), from the configs in bench/configs (no weights, no GPU). Prints markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
for preset in s1 s1.1 limo; do
  for run in "qwen2.5-32b 16" "qwen2.5-32b 8" "qwen2.5-7b 1" "qwen2.5-1.5b 1"; do
    set -- $run
    cmd="s1kit train --plan --preset $preset --model bench/configs/$1.json --gpus $2 --gpu-memory 80"
    echo "### $preset, $1, $2 x 80 GB"
    echo
    echo '```text'
    echo "\$ $cmd"
    python -m s1kit.cli train --plan --preset "$preset" --model "bench/configs/$1.json" --gpus "$2" --gpu-memory 80
    echo '```'
    echo
  done
done
