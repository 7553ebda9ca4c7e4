#!/usr/bin/env bash
# Installs the Debian 12 packages anomalyd needs to build, test and run.
# Safe to run any number of times: it installs only what is missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libhiredis-dev libjansson-dev zlib1g-dev libpq-dev libinih-dev libmicrohttpd-dev
      check libsubunit-dev
      redis-server redis-tools postgresql postgresql-client
      valgrind
      clang libclang-rt-14-dev   # ops/fuzz.sh (libFuzzer)
      man-db stunnel4 openssl   # man pages (install test), TLS (stack --tls, test_tls)
      curl prometheus    # the metrics test scrapes with curl, checks with promtool
      libxml2-utils chromium)   # tests: xmllint checks the SVG plots, chromium the HTML report

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The Debian packages start system-wide servers on the default ports; the
# project never uses those (ops/stack.sh runs private ones), so keep the
# package scripts from starting them where policy-rc.d is honoured.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
