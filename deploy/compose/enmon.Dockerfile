# The enmon server image (ingest, rules; with EXTRAS=server,inspector also the inspector API).
# Build context: the repository root.   docker compose -f deploy/compose/docker-compose.yml build
FROM python:3.11-slim-bookworm

# which pip extras, and which Debian libraries they need (weasyprint: pango; CJK fonts for
# Chinese reports)
ARG EXTRAS=server
ARG APT_PACKAGES=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN if [ -n "$APT_PACKAGES" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY enmon enmon
COPY energy energy
COPY gateway gateway
COPY ingest ingest
COPY rules rules
COPY inspector inspector
COPY firmware_sim firmware_sim
COPY deploy deploy
COPY stack stack
RUN pip install ".[${EXTRAS}]" && rm -rf /src

# an unprivileged user (uid 10001: `enmon deploy credentials --service-owner 10001:10001`)
RUN useradd --system --uid 10001 --home-dir /var/lib/enmon --create-home enmon
USER enmon
WORKDIR /var/lib/enmon
CMD ["enmon", "--help"]
