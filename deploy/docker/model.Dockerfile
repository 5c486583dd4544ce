# syntax=docker/dockerfile:1
# Model tooling (`nextaction train`, `export`, `add-items`, `quality`): the [model] extra with
# the CPU build of torch. Optional: the worker image never needs it. Build from the repository
# root:
#   docker build -f deploy/docker/model.Dockerfile -t nextaction-model:0.1.0 .
# Base images carry exact version tags; pin their digests in your registry (docs/deploy.md).

FROM python:3.11.14-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# torch first, from the CPU index and pinned as in pyproject's [model] extra: resolved from
# PyPI it would be the multi-GB CUDA build, which training this model does not need.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md contract.py ./
COPY stream ./stream
COPY serving ./serving
COPY tools ./tools
COPY cli ./cli
COPY benchmarks ./benchmarks
RUN pip install '.[model]'
RUN groupadd --system --gid 10001 nextaction \
    && useradd --system --uid 10001 --gid 10001 --home-dir /work --create-home nextaction
USER 10001
WORKDIR /work
ENTRYPOINT ["nextaction"]
CMD ["--help"]
