# syntax=docker/dockerfile:1
#
# Stages:
#   build    installs Shoal into a virtualenv at /opt/venv
#   test     build + test extras, redis-server, nginx, Go, and the whole repo;
#            runs the test suite (compose.yaml, profile "test")
#   runtime  the server image (the last stage, so it is the default target)

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pyproject.toml names README.md as the readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .


FROM build AS test
# The suite starts its own redis-server, puts nginx in front of several
# `shoal serve` processes (tests/test_scale_out.py, through
# benchmarks/local_stack.py), checks nginx's config, drives the docs page in
# Chromium, runs wrk's Lua scripts and runs the Data API's npm client with
# Node.js: all must be on PATH, as scripts/test installs them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server nginx chromium wrk nodejs npm \
    && rm -rf /var/lib/apt/lists/*
# Go, with which scripts/toxiproxy builds Toxiproxy for the fault tests
# (tests/test_faults.py) the first time they run.
COPY --from=golang:1.24-bookworm /usr/local/go /usr/local/go
RUN pip install ".[test]"
# The whole context (see .dockerignore): tests/, examples/, compose.yaml,
# hypercorn.toml, deploy/ ... which the tests read.
COPY . .
CMD ["python", "-m", "pytest", "-q"]


FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid shoal --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin shoal \
    && mkdir -p /etc/shoal
# Same base image and same path, so the venv's interpreter links stay valid.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# `shoal serve` reads hypercorn.toml from the current directory.
COPY hypercorn.toml ./
# A numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8000
# No curl in the slim image; urlopen raises (exit 1) on a refused connection or an HTTP error.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["shoal", "serve", "--config", "/etc/shoal/shoal.yaml", "--bind", "0.0.0.0:8000"]
