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
# vLLM with s1kit budget forcing, end to end (issue 13). The image has no vLLM and the machine no
# network: carry a venv or wheels with vLLM 0.33 and point S1KIT_VLLM_PYTHON at its python, and
# S1KIT_VLLM_MODEL at a local small reasoning model; otherwise this part says why it is skipped.
# On a GPU vLLM runs with asynchronous scheduling on (its default): tests/engines/test_vllm_e2e.py
# then checks the placeholder path end to end, and bench/vllm_forcing.py measures tokens/s
# (forcing off, vLLM's thinking_token_budget, s1kit cap, s1kit cap + 2 extensions).
vpy="${S1KIT_VLLM_PYTHON:-python3}"
if ! "$vpy" -c "import vllm" 2>/dev/null; then
  echo "vLLM part skipped: $vpy cannot import vllm (set S1KIT_VLLM_PYTHON to a python with vLLM 0.33)" | tee "$out/vllm.txt"
else
  timeout 300 "$vpy" -m pytest -q -p no:cacheprovider tests/engines/test_vllm_e2e.py tests/engines/test_vllm_batch.py 2>&1 | tee "$out/vllm_tests.log"
  # --engine vllm / --engine openai (issue 14): s1kit's engine vs vLLM field for field, the served
  # recipe of docs/serving.md, and in-loop forcing vs re-prompting on the same vLLM engine (tiny
  # random model; with S1KIT_VLLM_MODEL also on the real one).
  timeout 400 "$vpy" -m pytest -q -p no:cacheprovider tests/engines/test_vllm_backend.py tests/engines/test_vllm_openai_backend.py 2>&1 | tee "$out/vllm_backend_tests.log"
  timeout 300 "$vpy" bench/forcing_inloop_vs_reprompt.py --engine vllm 2>&1 | tee "$out/forcing_inloop_vs_reprompt.txt"
  if [ -n "${S1KIT_VLLM_MODEL:-}" ]; then
    timeout 400 "$vpy" bench/forcing_inloop_vs_reprompt.py --engine vllm --model "$S1KIT_VLLM_MODEL" --style think_tags --max-new 2048 --repeat 1 2>&1 | tee -a "$out/forcing_inloop_vs_reprompt.txt"
  fi
fi
# Model Runner V2 (vLLM 0.34, or 0.33's default runner) end to end: the tiny saved Qwen2 model, the
# documented snippet with default settings (async scheduling on), two "Wait"s, a cap and a request
# without a budget, token for token against override mode; then the V2 objects' property tests.
# S1KIT_VLLM_V2_PYTHON: a python with vLLM 0.34 (default: the one above). A separate pytest run, so
# the V1 tests' VLLM_USE_V2_MODEL_RUNNER=0 does not leak into it.
# First without vLLM: the V2 processor on CUDA tensors equals override mode, and a decode step
# queues device work only (torch.cuda.set_sync_debug_mode("error") around apply).
timeout 120 python3 -m pytest -q -rs -p no:cacheprovider tests/unit/test_budget_vllm_v2.py -k "cuda or synchronise" 2>&1 | tee "$out/vllm_v2_device.log"
v2py="${S1KIT_VLLM_V2_PYTHON:-$vpy}"
if ! "$v2py" -c "import s1kit.budget.adapters.vllm_v2" 2>/dev/null; then
  echo "vLLM V2 part skipped: $v2py cannot import s1kit.budget.adapters.vllm_v2 (needs vLLM >=0.33,<0.35)" | tee "$out/vllm_v2.txt"
else
  timeout 300 "$v2py" -m pytest -q -rs -p no:cacheprovider tests/engines/test_vllm_v2_e2e.py tests/engines/test_vllm_v2_runner.py 2>&1 | tee "$out/vllm_v2_tests.log"
fi
if "$vpy" -c "import vllm" 2>/dev/null; then
  if [ -n "${S1KIT_VLLM_MODEL:-}" ]; then
    timeout 400 "$vpy" bench/vllm_forcing.py --model "$S1KIT_VLLM_MODEL" 2>&1 | tee "$out/vllm_forcing.txt"
  else
    echo "vllm_forcing skipped: S1KIT_VLLM_MODEL (a local small reasoning model) is not set" | tee "$out/vllm_forcing.txt"
  fi
fi
# SGLang with s1kit budget forcing, end to end (issue 14): `--engine sglang` on a tiny saved model
# must give s1kit's engine's tokens and accounting (tests/engines/cross_engine.py). The image has no
# SGLang: carry a venv with SGLang 0.5.23 and point S1KIT_SGLANG_PYTHON at its python.
spy="${S1KIT_SGLANG_PYTHON:-python3}"
if ! "$spy" -c "import sglang" 2>/dev/null; then
  echo "SGLang part skipped: $spy cannot import sglang (set S1KIT_SGLANG_PYTHON to a python with SGLang 0.5.23)" | tee "$out/sglang.txt"
else
  timeout 400 "$spy" -m pytest -q -rs -p no:cacheprovider tests/engines/test_sglang_backend.py tests/engines/test_sglang_engine.py 2>&1 | tee "$out/sglang_tests.log"
fi
