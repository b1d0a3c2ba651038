#!/bin/sh
# Tools `make bench` needs beyond the uv workspace: wrk (HTTP load generator).
set -eu
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y wrk
fi
wrk --version 2>&1 | head -1 || true
