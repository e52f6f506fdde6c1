# The enmon server image (ingest, rules, API). Build context: the repository root.
#   docker compose -f deploy/compose/docker-compose.yml build
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY enmon enmon
COPY gateway gateway
COPY ingest ingest
COPY rules rules
COPY firmware_sim firmware_sim
RUN pip install ".[server]" && rm -rf /src

# an unprivileged user that owns only the state directory
RUN useradd --system --uid 10001 --home-dir /var/lib/enmon --create-home enmon
USER enmon
WORKDIR /var/lib/enmon
ENTRYPOINT []
CMD ["enmon", "--help"]
