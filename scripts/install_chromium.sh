#!/usr/bin/env bash
# Make Debian's headless Chromium and its WebDriver available for the status page tests (tests/web/).
#
# Idempotent and quiet on success: installs Debian's chromium and chromium-driver packages if either
# /usr/bin/chromium or /usr/bin/chromedriver is missing (as root only), then checks that both run.
# Exits non-zero with the reason when they cannot be used; the tests then skip (and fail when CI is set).
#
#   scripts/install_chromium.sh
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

fail() {
    echo "install_chromium: error: $*" >&2
    exit 1
}

if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "chromium or chromium-driver is not installed and this is not root: install them (Debian: apt-get install chromium chromium-driver) and run again"
    fi
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    # apt's own output is shown only when it fails.
    apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get install chromium chromium-driver failed"; }
    [ -x "$CHROMIUM" ] || fail "the chromium package is installed but $CHROMIUM is missing"
    [ -x "$CHROMEDRIVER" ] || fail "the chromium-driver package is installed but $CHROMEDRIVER is missing"
fi

"$CHROMIUM" --version >/dev/null 2>&1 || fail "chromium does not run: $("$CHROMIUM" --version 2>&1 | head -n 1)"
"$CHROMEDRIVER" --version >/dev/null 2>&1 || fail "chromedriver does not run: $("$CHROMEDRIVER" --version 2>&1 | head -n 1)"
