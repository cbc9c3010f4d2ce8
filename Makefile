# The two commands of README.md:  `make demo`  and  `make test`.  Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1

.PHONY: setup system demo test lint typecheck pytest bench performance soak fuzz fuzz-c train clean

## setup: system tools, a virtualenv with rlay and its dev tools, the node test helper.
setup: system $(VENV)/.installed tests/thirdparty/node_modules/.installed

system:
	@bash scripts/setup-system.sh

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch==2.13.0'  # first, so that SB3 takes this one (a CPU build where one is offered)
	$(PY) -m pip install -q -e '.[dev,sb3]'
	touch $@

tests/thirdparty/node_modules/.installed: $(wildcard tests/thirdparty/package*.json)
	@if [ -f tests/thirdparty/package.json ]; then npm ci --prefix tests/thirdparty --no-audit --no-fund --loglevel=error; fi
	@mkdir -p tests/thirdparty/node_modules && touch $@

## demo: a C program served as a Gymnasium env, stepped from Python both ways.
demo: setup
	$(PY) examples/demo.py

## test: lint, types, and every test (Python core, envs, SDKs with their real toolchains), then
## the RLlib tests in their own .venv-rllib (Ray pins another gymnasium; about 1.5 min more).
test: setup lint typecheck pytest test-rllib

lint:
	$(VENV)/bin/ruff check rlay tests examples bench fuzz spec/vectors
	$(VENV)/bin/ruff format --check rlay tests examples bench fuzz spec/vectors

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest -q

## bench: the speed table (ratios against the raw-socket floor and gymnasium's vector envs).
bench: setup
	$(PY) bench/codec.py
	$(PY) bench/step.py
	$(PY) bench/vector.py

## performance: docs/performance.md and its plot, from one run (K="1,2,4,8,16" on a big machine).
K ?= 1,2,4
performance: setup
	$(PY) bench/report.py --k $(K)

## train: PPO (Stable-Baselines3, CPU torch) learns the C CartPole through rlay until solved:
## one C program hosting 8 batched sub-envs (rlay.sb3.SB3VecEnv); TRAIN_ARGS= for 8 processes.
TRAIN_ARGS ?= --batched
train: setup
	$(PY) examples/train_cartpole.py $(TRAIN_ARGS)

## train-csharp: the same PPO on the C# SDK's CartPole (sdk/csharp, mcs + mono) until solved.
.PHONY: train-csharp
train-csharp: setup
	$(PY) -m pip install -q 'torch==2.13.0' 'stable-baselines3>=2.3'
	$(MAKE) -s -C sdk/csharp build/cartpole.exe
	$(PY) examples/train_cartpole.py --program sdk/csharp/bin/cartpole

## train-godot: PPO learns Puck, a Godot 3 game (RigidBody2D physics), over 4 headless engines.
.PHONY: train-godot
train-godot: setup
	$(PY) -m pip install -q 'torch==2.13.0' 'stable-baselines3>=2.3'
	$(PY) examples/train_godot.py

## train-browser: PPO learns Paddle, a canvas game (examples/browser_paddle), on headless node
## instances, then plays the real page in headless chromium over ws:// (docs/browser_paddle.png).
.PHONY: train-browser
train-browser: setup
	$(PY) -m pip install -q 'torch==2.13.0' 'stable-baselines3>=2.3'
	$(PY) examples/train_browser.py

## train-rllib: PPO (Ray RLlib) learns the C CartPole on a two-node Ray cluster started here with
## `ray start` (head + worker, loopback), each env runner launching its C programs through rlay
## (docs/rllib.md); `ray stop` at the end, also on failure. RLLIB_ARGS= for the example's flags.
## Ray lives in its own .venv-rllib: the rllib extra pins gymnasium==1.2.2 (see pyproject.toml).
RLLIB_VENV := .venv-rllib
RLLIB_ARGS ?=
.PHONY: train-rllib test-rllib
$(RLLIB_VENV)/.installed: pyproject.toml
	test -x $(RLLIB_VENV)/bin/python || $(PYTHON) -m venv $(RLLIB_VENV)
	$(RLLIB_VENV)/bin/python -m pip install -q --upgrade pip
	$(RLLIB_VENV)/bin/python -m pip install -q 'torch==2.13.0'
	$(RLLIB_VENV)/bin/python -m pip install -q -e '.[rllib]' 'pytest>=8'
	touch $@

train-rllib: system $(RLLIB_VENV)/.installed
	RAY=$(RLLIB_VENV)/bin/ray bash scripts/ray-cluster.sh \
		$(RLLIB_VENV)/bin/python examples/rllib_cartpole.py --address auto $(RLLIB_ARGS)

## test-rllib: the RLlib tests (a short PPO run on a local Ray and on a `ray start` cluster, kill -9
## of an env runner leaves no env program) and the env creator's, in .venv-rllib.
test-rllib: system $(RLLIB_VENV)/.installed
	$(RLLIB_VENV)/bin/pytest -q --rllib tests/test_rllib.py tests/test_rllib_creator.py

## soak: 10**7 steps of a Python agent against the C and the Python CartPole, with both processes'
## RSS and descriptors sampled from /proc and checked flat (SOAK_ARGS= to change; not in CI).
SOAK_STEPS ?= 10000000
SOAK_ARGS ?=
soak: setup
	$(PY) bench/soak.py --steps $(SOAK_STEPS) $(SOAK_ARGS)

## fuzz: a longer fuzz of the Python decoder (the test suite runs a short one).
fuzz: setup
	$(PY) -m pip install -q 'atheris>=2.3'
	$(PY) fuzz/fuzz_protocol.py --seconds 300

## fuzz-c: libFuzzer (with ASan+UBSan) on the C SDK's decoder, 300 s.
fuzz-c: setup
	$(MAKE) -C sdk/c fuzz FUZZ_SECONDS=300 PYTHON=$(abspath $(PY))

clean:
	rm -rf $(VENV) $(RLLIB_VENV) tests/thirdparty/node_modules .pytest_cache .mypy_cache .ruff_cache
