#!/usr/bin/env bash
# nginx from Debian (nginx-light): the local gateway (studyshare.devstack.gateway) runs its own
# nginx as a child process, with a generated configuration, on 127.0.0.1 and in a directory of
# its own (it never uses the package's system service). Idempotent; needs root or sudo.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    exit 0
fi
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing Debian packages: nginx-light"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends nginx-light
