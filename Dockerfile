# The runlens worker / CLI image used by docker-compose.yml (production-like stack).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY runlens runlens
COPY schemas schemas
COPY producers producers
COPY streams streams
COPY sinks sinks
COPY dashboards dashboards
COPY embedded embedded
RUN pip install . && useradd --system --uid 10001 runlens
USER runlens
ENTRYPOINT ["runlens"]
CMD ["worker"]
