# One image for every compose service (api, worker, beat, migrate, emulator).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
RUN pip install --no-cache-dir .
ENV BATCHYARD_DATA_DIR=/data
ENTRYPOINT ["batchyard"]
