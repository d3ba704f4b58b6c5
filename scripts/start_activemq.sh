#!/usr/bin/env bash
# Make a local ActiveMQ available for the authorization tests (tests/unit/test_activemq_authorization.py).
#
# Idempotent and quiet on success: installs Debian's activemq package if it is
# missing (as root only; about 28 MB of .debs, 73 packages, ~20 s) and checks that
# Java can run its launcher. It does NOT start Debian's activemq service (whose
# instances-enabled/ is empty anyway): each test session starts its own broker
# process, with the configuration under test, on a free 127.0.0.1 port
# (tests/local_activemq.py). Exits non-zero with the reason when ActiveMQ cannot be used.
#
#   scripts/start_activemq.sh
set -euo pipefail

ACTIVEMQ_JAR=/usr/share/activemq/bin/activemq.jar

fail() {
    echo "start_activemq: error: $*" >&2
    exit 1
}

if [ ! -f "$ACTIVEMQ_JAR" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "ActiveMQ is not installed and this is not root: install it (Debian: apt-get install --no-install-recommends activemq) and run again"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq --no-install-recommends activemq >/dev/null || fail "apt-get install activemq failed"
    [ -f "$ACTIVEMQ_JAR" ] || fail "the activemq package is installed but $ACTIVEMQ_JAR is missing"
fi

command -v java >/dev/null 2>&1 || fail "java is not on PATH (Debian: apt-get install default-jre-headless)"
java -version >/dev/null 2>&1 || fail "java does not run: $(java -version 2>&1 | head -n 1)"
