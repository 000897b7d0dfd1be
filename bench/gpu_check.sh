#!/usr/bin/env bash
# All GPU checks in one prepared run for a lent H100/H200 (the `device` tool). Builds nothing there.
#
# Here (CPU machine), once:   echo /.whl/ >> .git/info/exclude
#                             maturin build --release -o .whl          # the abi3 wheel of s1kit
# Then run, carrying .whl:    bash bench/gpu_check.sh                  # ~10 minutes in all
# It installs the wheel without dependencies into /tmp/site (the image has torch, transformers,
# tokenizers, safetensors, numpy, pytest, hypothesis, matplotlib), runs the `gpu` tests, then the GPU
# parts of bench/decode.py (s1kit vs transformers; budget forcing off / host / in-graph with the
# run-ahead loop, K steps per host sync, and the in-graph step under torch.compile) and
# bench/train_mfu.py (FSDP2 packed vs naive, MFU). Each part prints its own table and JSON line;
# logs go to $OUT when set. Commit the tables to bench/results/<date>_<card>.md with the card's name.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/s1kit-gpu}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/s1kit-*.whl || exit 1
export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/card.txt"
timeout 200 python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
timeout 240 python3 bench/decode.py --gpu-only --skip-compile --compile-budget 2>&1 | tee "$out/decode.txt"
timeout 200 python3 bench/train_mfu.py --steps 3 2>&1 | tee "$out/train_mfu.txt"
