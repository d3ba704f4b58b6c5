# Messaging blueprints: set-up, synth with compliance checks, tests, benchmarks, deploy.
#
#   make synth                      synthesize every blueprint, run the five cdk-nag packs and cfn-lint
#   make synth PROFILE=production   the same for the production profile
#   make test                       the whole test suite (both profiles)
#   make deploy STACK=Exercise01Queues [PROFILE=...]

PROFILE ?= sandbox
STACK ?= --all
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
# jsii still runs on Node.js 20; keep its end-of-life banner out of every command's output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup layers synth test lint bench deploy diff destroy clean

setup: $(VENV)/.installed node_modules/.installed layers

# Lambda layer folders (build/layers/<name>/python) from the pinned layers/<name>/requirements.txt.
layers: $(VENV)/.installed
	$(PY) -m scripts.build_layers

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: setup
	$(PY) -m scripts.compliance_report --profile $(PROFILE)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/synth_time.py
	$(PY) benchmarks/handler_throughput.py
	$(PY) benchmarks/producer_api_calls.py
	$(PY) benchmarks/eventbridge_api_calls.py
	$(PY) benchmarks/eventbridge_consumer_cpu.py
	$(PY) benchmarks/event_store_commands.py

deploy: setup
	$(CDK) deploy $(STACK) -c profile=$(PROFILE)

diff: setup
	$(CDK) diff $(STACK) -c profile=$(PROFILE)

destroy: setup
	$(CDK) destroy $(STACK) -c profile=$(PROFILE)

clean:
	rm -rf cdk.out .pytest_cache .hypothesis
