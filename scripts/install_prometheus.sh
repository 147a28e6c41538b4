#!/usr/bin/env bash
# Prometheus for the demo's scrape of the local endpoint (mlops/local/prometheus.py): Debian's package, as
# root where apt-get exists; nothing to do when a `prometheus` binary is on PATH. The demo itself runs
# without one (it says so), so `make run` does not need this; CI installs it to test the real scrape.
set -euo pipefail
if command -v prometheus >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: no prometheus binary and no way to install one (needs root and apt-get)" >&2
  exit 1
fi
echo "installing prometheus from Debian's packages"
apt-get update -qq
# The package's service is not started here (no init system in CI); the demo starts its own server.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
