#!/usr/bin/env bash
# Start a local RabbitMQ on 127.0.0.1 for the AMQP and STOMP handler tests and the benchmark.
#
# Idempotent: installs Debian's rabbitmq-server if it is missing (as root only),
# enables the STOMP and management plugins, starts the node if it is not running,
# and waits until AMQP (5672), STOMP (61613) and the management API (15672) accept connections. Prints each step it takes;
# exits non-zero with the reason if the broker is not ready in time.
#
#   scripts/start_rabbitmq.sh                 wait up to 60 s
#   RABBITMQ_START_TIMEOUT=120 scripts/start_rabbitmq.sh
set -euo pipefail

TIMEOUT="${RABBITMQ_START_TIMEOUT:-60}"
AMQP_PORT=5672
STOMP_PORT=61613
MANAGEMENT_PORT=15672
PLUGINS="rabbitmq_stomp rabbitmq_management"

say() { echo "start_rabbitmq: $*"; }
fail() {
    echo "start_rabbitmq: error: $*" >&2
    exit 1
}

port_open() {
    # bash's /dev/tcp; the subshell closes the socket again.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

node_running() {
    rabbitmqctl -q status >/dev/null 2>&1
}

if ! command -v rabbitmq-server >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "rabbitmq-server is not installed and this is not root: install it (Debian: apt-get install rabbitmq-server) and run again"
    fi
    say "installing rabbitmq-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq rabbitmq-server >/dev/null || fail "apt-get install rabbitmq-server failed"
    # The package's post-install step may have started the node already; the steps below cope either way.
else
    say "rabbitmq-server is installed ($(command -v rabbitmq-server))"
fi

if node_running; then
    if ! port_open "$STOMP_PORT" || ! port_open "$MANAGEMENT_PORT"; then
        say "node is running without STOMP or the management API: enabling $PLUGINS on the running node"
        # shellcheck disable=SC2086
        rabbitmq-plugins -q enable $PLUGINS >/dev/null || fail "could not enable $PLUGINS on the running node"
    fi
    say "node is already running"
else
    say "enabling $PLUGINS (offline)"
    # shellcheck disable=SC2086
    rabbitmq-plugins -q enable --offline $PLUGINS >/dev/null || fail "could not enable $PLUGINS"
    say "starting the node: rabbitmq-server -detached"
    rabbitmq-server -detached || fail "rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
fi

deadline=$((SECONDS + TIMEOUT))
say "waiting up to ${TIMEOUT} s for the node to boot"
until rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        fail "the node did not finish booting within ${TIMEOUT} s (see /var/log/rabbitmq/)"
    fi
    sleep 1
done
for port in "$AMQP_PORT" "$STOMP_PORT" "$MANAGEMENT_PORT"; do
    until port_open "$port"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "nothing listens on 127.0.0.1:${port} after ${TIMEOUT} s (see /var/log/rabbitmq/)"
        fi
        sleep 1
    done
done
say "ready: AMQP on 127.0.0.1:${AMQP_PORT}, STOMP on 127.0.0.1:${STOMP_PORT}, management API on 127.0.0.1:${MANAGEMENT_PORT} ($(rabbitmqctl -q version 2>/dev/null || echo 'version unknown'))"
