FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY sync_worker ./sync_worker
COPY web ./web
# The production install: pinned by constraints.txt (scripts/lock), without the sandbox extra.
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
# The receiver's check; docker-compose.yml gives the worker its own (its heartbeat) and beat none.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "sync_worker.healthcheck", "web"]
