# Multi-stage image for the parcours API. Build: docker build -t parcours .
# Run (API keys are required beyond loopback; see README "Docker"):
#   docker run -p 8000:8000 -e PARCOURS_API_KEYS='sha256:<hex>' -v $PWD/workspace:/workspace parcours
FROM python:3.11-slim AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY journey ./journey
COPY features ./features
COPY training ./training
COPY serving ./serving
COPY parcours ./parcours
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir ".[fast]"

FROM python:3.11-slim AS runtime
# libgomp: LightGBM's OpenMP runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 parcours && mkdir /workspace && chown parcours /workspace
COPY --from=build /opt/venv /opt/venv
# No PARCOURS_API_KEYS here on purpose: the server refuses to bind 0.0.0.0 until the operator provides hashed keys.
ENV PATH=/opt/venv/bin:$PATH PARCOURS_HOME=/workspace PYTHONUNBUFFERED=1 PARCOURS_LOG_FORMAT=json
USER parcours
WORKDIR /workspace
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["parcours", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
