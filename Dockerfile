# syntax=docker/dockerfile:1
# Sapphire's image: the API service (`sapphire serve`, the default command) and its nodes
# (`sapphire paper ...`, `sapphire live ...`). docs/operations.md, "Deployment".
#
#   docker build -t sapphire:0.1.0 .                          # the core
#   docker build --build-arg EXTRAS='[ml]' -t sapphire:0.1.0-ml .   # with the ML extra
#
# The builder stage makes a wheel of Sapphire and of every dependency (compiling any that
# has no wheel for this platform); the final stage installs them from that folder alone,
# so it carries no compiler, no pip cache and no source tree.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels ".${EXTRAS}"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=""
LABEL org.opencontainers.image.title="sapphire" \
      org.opencontainers.image.description="Machine-learning-driven algorithmic trading: service and nodes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAPPHIRE_HOME=/data \
    SAPPHIRE_PORT=8000
RUN groupadd --system --gid 10001 sapphire \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin sapphire \
    && install -d -o 10001 -g 10001 -m 0700 /data
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels "sapphire${EXTRAS}"
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8000
# Liveness of the service; a node's container overrides or disables it (compose, k8s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SAPPHIRE_PORT', '8000') + '/api/v1/health', timeout=4)"]
ENTRYPOINT ["sapphire"]
CMD ["serve", "--host", "0.0.0.0"]
