FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sync_worker ./sync_worker
COPY web ./web
RUN pip install --no-cache-dir .
USER nobody
