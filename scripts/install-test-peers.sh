#!/usr/bin/env bash
# The real peers the tests talk to, from Debian: kcat (Kafka client), oathtool (RFC 6238
# codes) and dcmtk (storescu/storescp, a real PACS). Idempotent; needs root or sudo to install.
set -euo pipefail
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v oathtool >/dev/null 2>&1 || missing+=(oathtool)
command -v storescp >/dev/null 2>&1 || missing+=(dcmtk)
((${#missing[@]})) || exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
