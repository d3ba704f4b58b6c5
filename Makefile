# Messaging blueprints: set-up, synth with compliance checks, tests, benchmarks, deploy.
#
#   make synth                      synthesize every blueprint, run the five cdk-nag packs, MessagingChecks and cfn-lint
#   make synth PROFILE=production   the same for the production profile
#   make test                       the whole test suite (both profiles), with a local RabbitMQ for the AMQP/STOMP tests
#                                   and Debian's headless Chromium + chromedriver for the status page tests
#                                   (scripts/install_chromium.sh installs them as root when missing; without them those
#                                   tests are skipped, and fail under CI=true), and Debian's Mosquitto for the MQTT device
#                                   path tests (scripts/install_mosquitto.sh installs it as root when missing; the tests
#                                   start their own broker; without it they are skipped, and fail under CI=true)
#   make diagrams                   regenerate the Mermaid diagram in each blueprint's docs page from its template
#   make cost                       price every blueprint (idle a month, per million messages, both profiles) from its
#                                   templates and messaging_constructs/costs/prices.toml; rewrite the docs pages' cost blocks
#   make rabbitmq                   install (Debian, as root) and start that RabbitMQ on 127.0.0.1
#   make activemq                   install (Debian, as root) the ActiveMQ the authorization tests start on 127.0.0.1
#   make deploy STACK=Exercise01Queues [PROFILE=...]

PROFILE ?= sandbox
STACK ?= --all
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
# jsii still runs on Node.js 20; keep its end-of-life banner out of every command's output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup layers rabbitmq activemq synth diagrams cost test lint bench deploy diff destroy clean

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

# Each blueprint's docs page shows a Mermaid diagram of its message paths, made from its synthesized template.
diagrams: setup
	$(PY) -m scripts.diagrams

# Each blueprint's docs page shows its idle and per-million cost, computed from its synthesized templates and the dated price table.
cost: setup
	$(PY) -m scripts.cost_report

# The AMQP, STOMP and topology tests talk to a real RabbitMQ; without one they are skipped (and fail under CI=true).
rabbitmq:
	bash scripts/start_rabbitmq.sh

# The ActiveMQ authorization tests start a broker of their own from Debian's activemq; without it they are skipped (and fail under CI=true).
activemq:
	bash scripts/start_activemq.sh

# Two workers, a test file per worker at a time; the synth with the packs is made once and shared (tests/conftest.py).
test: setup
	@bash scripts/start_rabbitmq.sh || echo "make test: no local RabbitMQ; its tests will be skipped (they fail when CI is set)"
	@bash scripts/start_activemq.sh || echo "make test: no local ActiveMQ; its tests will be skipped (they fail when CI is set)"
	@bash scripts/install_chromium.sh || echo "make test: no Chromium and chromedriver; the status page tests will be skipped (they fail when CI is set)"
	@bash scripts/install_mosquitto.sh || echo "make test: no mosquitto; the MQTT device path tests will be skipped (they fail when CI is set)"
	$(PY) -m pytest -n 2 --dist loadfile

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
	$(PY) benchmarks/kafka_consumer_cpu.py
	$(PY) benchmarks/mq_consumer_cpu.py
	$(PY) benchmarks/analytics_cpu.py
	@bash scripts/start_rabbitmq.sh >/dev/null
	$(PY) benchmarks/amqp_publish_rate.py

deploy: setup
	$(CDK) deploy $(STACK) -c profile=$(PROFILE)

diff: setup
	$(CDK) diff $(STACK) -c profile=$(PROFILE)

destroy: setup
	$(CDK) destroy $(STACK) -c profile=$(PROFILE)

clean:
	rm -rf cdk.out .pytest_cache .hypothesis
