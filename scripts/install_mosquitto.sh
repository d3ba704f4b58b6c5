#!/usr/bin/env bash
# Make Debian's Mosquitto MQTT broker available for the device path tests (tests/handlers/test_analytics_device_path.py).
#
# Idempotent and quiet on success: installs Debian's mosquitto package when /usr/sbin/mosquitto is missing (as root
# only; no recommends, so no mosquitto-clients) and checks that the broker runs by asking it for its version. It does
# NOT start a broker: during the install, invoke-rc.d is told not to start the package's service (a policy-rc.d that
# denies it is put in place when none exists, and removed again). Each test module starts its own broker, with a
# configuration of its own, on a free 127.0.0.1 port. Exits non-zero with the reason when Mosquitto cannot be used;
# the tests then skip (and fail when CI is set).
#
#   scripts/install_mosquitto.sh
set -euo pipefail

MOSQUITTO=/usr/sbin/mosquitto
POLICY_RC_D=/usr/sbin/policy-rc.d

fail() {
    echo "install_mosquitto: error: $*" >&2
    exit 1
}

if [ ! -x "$MOSQUITTO" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "mosquitto is not installed and this is not root: install it (Debian: apt-get install --no-install-recommends mosquitto) and run again"
    fi
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    cleanup=("$log")
    if [ ! -e "$POLICY_RC_D" ]; then
        # 101: "action forbidden by policy"; invoke-rc.d and deb-systemd-invoke then leave the service stopped.
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC_D"
        chmod 755 "$POLICY_RC_D"
        cleanup+=("$POLICY_RC_D")
    fi
    trap 'rm -f "${cleanup[@]}"' EXIT
    # apt's own output is shown only when it fails.
    apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends mosquitto >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get install mosquitto failed"; }
    [ -x "$MOSQUITTO" ] || fail "the mosquitto package is installed but $MOSQUITTO is missing"
fi

# `mosquitto -h` prints its usage, which starts with "mosquitto version X.Y.Z", and exits non-zero on some versions
# (3 on 2.0.11): the version line is what tells that the binary and its libraries load.
usage="$("$MOSQUITTO" -h 2>&1 || true)"
grep -Eq '^mosquitto version [0-9]+\.[0-9]+' <<<"$usage" || fail "mosquitto does not run: $(head -n 1 <<<"$usage")"
