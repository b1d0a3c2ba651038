# syntax=docker/dockerfile:1
# One image per service, all built from this file: three processes each (`api`, `relay`,
# `worker`). Build from the repository root (`make images` builds every service):
#   docker build --build-arg SERVICE=share --build-arg MODULE=studyshare.share \
#     --build-arg PORT=8102 --build-arg WORKER_PORT=8202 -t studyshare-share:0.1.0 .
# SERVICE is the directory under services/ (the package is studyshare-<SERVICE>), MODULE the
# importable package run with `python -m`, PORT the API port of the route table and WORKER_PORT
# the worker's health port (PORT + 100).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: resolve the locked runtime dependencies of this one package into /app/.venv ----
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=<service> is required" >&2; exit 1; }
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (a cached layer until uv.lock or a pyproject.toml changes). uv needs every
# workspace member's pyproject.toml to read the lock.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY libs/plumbing/pyproject.toml libs/plumbing/
COPY libs/access-policy/pyproject.toml libs/access-policy/
COPY devstack/pyproject.toml devstack/
COPY portal/pyproject.toml portal/
COPY services/identity/pyproject.toml services/identity/
COPY services/share/pyproject.toml services/share/
COPY services/study-store/pyproject.toml services/study-store/
COPY services/notify/pyproject.toml services/notify/
COPY services/audit/pyproject.toml services/audit/
RUN uv sync --frozen --no-dev --no-install-workspace --package studyshare-${SERVICE}
# Then the code: contracts, the shared libraries and this service, installed as wheels (not
# editable).
COPY contracts/ contracts/
COPY libs/plumbing/ libs/plumbing/
COPY libs/access-policy/ libs/access-policy/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN uv sync --frozen --no-dev --no-editable --package studyshare-${SERVICE}

# --- runtime: the interpreter, the virtualenv, nothing else ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ARG MODULE
ARG PORT
ARG WORKER_PORT
LABEL org.opencontainers.image.title="studyshare-${SERVICE}" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid 10001 studyshare \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin studyshare
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STUDYSHARE_SERVICE_MODULE=${MODULE} \
    STUDYSHARE_HTTP_HOST=0.0.0.0 \
    STUDYSHARE_HTTP_PORT=${PORT} \
    HEALTHCHECK_PORT=${PORT}
USER 10001:10001
WORKDIR /tmp
# The api listens on PORT; `worker --port $WORKER_PORT` serves the worker's /healthz, /readyz,
# /metrics (set HEALTHCHECK_PORT to it); the relay serves no HTTP (run it with
# --no-healthcheck). Kubernetes ignores HEALTHCHECK and uses its own probes.
EXPOSE ${PORT} ${WORKER_PORT}
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ['HEALTHCHECK_PORT'], timeout=4)"]
# A shell only to expand the module name, then `exec`: the service is PID 1 and gets signals.
ENTRYPOINT ["/bin/sh", "-c", "exec python -m \"$STUDYSHARE_SERVICE_MODULE\" \"$@\"", "studyshare"]
CMD ["api"]
