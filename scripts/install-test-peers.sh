#!/usr/bin/env bash
# The real peers the tests talk to, from Debian: kcat (Kafka client), oathtool (RFC 6238
# codes), dcmtk (storescu/storescp, a real PACS), chromium + chromium-driver (the portal's
# browser tests, driven by selenium), npm (fetches the portal's pinned htmx) and prometheus
# (for its promtool: the alert rules are checked and unit-tested, deploy/tests/test_monitoring.py;
# the server itself is not started) and nginx-light (the local gateway, scripts/install-nginx.sh).
# Idempotent; needs root or sudo to install.
set -euo pipefail
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v oathtool >/dev/null 2>&1 || missing+=(oathtool)
command -v storescp >/dev/null 2>&1 || missing+=(dcmtk)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
((${#missing[@]})) || exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
