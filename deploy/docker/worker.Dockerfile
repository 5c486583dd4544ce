# syntax=docker/dockerfile:1
# The stream worker: `pip install .`, the base install, which has no torch and no model
# libraries (the worker never loads them). Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t nextaction-worker:0.1.0 .
# Base images carry exact version tags; pin their digests in your registry (docs/deploy.md).

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtual environment at the path it keeps in the final stage: its scripts' shebangs stay valid.
RUN python -m venv /opt/nextaction
WORKDIR /src
COPY pyproject.toml README.md contract.py ./
COPY stream ./stream
COPY serving ./serving
COPY tools ./tools
COPY cli ./cli
COPY benchmarks ./benchmarks
RUN /opt/nextaction/bin/pip install .

FROM python:3.11.14-slim-bookworm
COPY --from=build /opt/nextaction /opt/nextaction
COPY deploy/docker/healthcheck.py /opt/nextaction/healthcheck.py
# A numeric uid, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 nextaction \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/nextaction --create-home nextaction
# Metrics and health on every interface: inside a container, 127.0.0.1 is unreachable from
# Prometheus and the kubelet. The data directory is writable by the user (rocksdb:// tables).
ENV PATH=/opt/nextaction/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NEXTACTION_METRICS_HOST=0.0.0.0 \
    NEXTACTION_METRICS_PORT=9108 \
    NEXTACTION_DATA_DIR=/var/lib/nextaction/data
USER 10001
WORKDIR /var/lib/nextaction
EXPOSE 9108
# The worker restores its table before it reads input; the start period leaves it time to.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "/opt/nextaction/healthcheck.py", "/livez"]
ENTRYPOINT ["nextaction", "worker"]
