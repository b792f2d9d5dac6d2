# relay: webhook relay for chat providers. Build: docker build -t relay .
# Run: docker run -p 8080:8080 -e RELAY_REDIS_URL=redis://redis:6379/0 relay
# Probes: liveness GET /healthz, readiness GET /readyz (503 while Redis does not answer).

# BASE: any Debian-like image with python3 (>= 3.11) and venv as `python`; tools/image-smoke
# passes a debootstrap-built Debian bookworm where no registry is reachable.
ARG BASE=python:3.12-slim-bookworm

# --- build: a virtualenv with relay and its runtime dependencies, nothing else ---------
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/relay
# The dependencies first, exactly as locked (versions and hashes: requirements.lock, see
# README "Dependencies"), in a layer of their own; then relay itself, which adds nothing.
COPY requirements.lock ./
# Wheels only (hiredis, orjson, uvloop ship manylinux wheels): no compiler in any stage.
RUN /opt/relay/bin/pip install --only-binary=:all: --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN /opt/relay/bin/pip install --no-deps --no-binary=relay ".[fast]" \
 && /opt/relay/bin/pip check \
 && /opt/relay/bin/python -m compileall -q /opt/relay/lib

# --- runtime: the virtualenv, a non-root user, no build tools -------------------------
FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="relay" \
      org.opencontainers.image.description="Chat-provider webhooks to exactly-once browser updates" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin relay
COPY --from=build /opt/relay /opt/relay
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_LOG_FORMAT=json
# No config/ here: mount the sources file and point RELAY_CONFIG at it
# (k8s/ mounts its ConfigMap at /etc/relay/relay.toml).
WORKDIR /app
USER 10001:10001
# 9090: /metrics when RELAY_METRICS_PORT=9090 (the k8s manifests and compose set it).
EXPOSE 8080 9090
# relay drains on SIGTERM (in-flight requests finish, then it exits).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RELAY_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["relay"]
CMD ["serve"]
