#!/bin/sh
# Tools `make bench` needs beyond the uv workspace: wrk (HTTP load generator) and nginx (the
# static-file baseline, run by bench/nginx.py on a port of its own; never as a system service).
set -eu
if ! command -v wrk >/dev/null 2>&1 || ! { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y wrk nginx-light
fi
wrk --version 2>&1 | head -1 || true
