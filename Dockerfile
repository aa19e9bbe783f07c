# One image for every shadowline process. It runs `shadowline instance` by default; the same
# image will run `shadowline watchdog` once that command exists.
ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: build the wheel (hatchling force-includes migrations/ and schemas/ as
# shadowline/_migrations and shadowline/_schemas) and install it into a self-contained venv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY migrations/ migrations/
COPY schemas/ schemas/
RUN python -m venv /opt/shadowline \
    && /opt/shadowline/bin/pip install --no-compile . \
    && /opt/shadowline/bin/python -m compileall -q /opt/shadowline/lib \
    && /opt/shadowline/bin/shadowline --version

# Runtime stage: the venv only; no source tree, no build tools, not root.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="shadowline" \
      org.opencontainers.image.description="Master/shadow high availability for configuration, event-sourced on PostgreSQL and RabbitMQ" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 shadowline \
    && useradd --system --uid 10001 --gid shadowline --home-dir /home/shadowline \
       --create-home --shell /usr/sbin/nologin shadowline
COPY --from=build /opt/shadowline /opt/shadowline
ENV PATH=/opt/shadowline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHADOWLINE_HTTP_BIND=0.0.0.0:8080
USER 10001:10001
WORKDIR /home/shadowline
EXPOSE 8080
# GET /health on the port of SHADOWLINE_HTTP_BIND (urlopen raises on anything but 2xx). A
# wildcard bind address is reached through loopback.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; h, _, p = os.environ.get('SHADOWLINE_HTTP_BIND', '0.0.0.0:8080').rpartition(':'); h = '127.0.0.1' if h.strip('[]') in ('', '0.0.0.0', '::') else h; urllib.request.urlopen(f'http://{h}:{p}/health', timeout=4)"]
# Exec form: shadowline is PID 1 and receives SIGTERM itself, with no shell in between.
ENTRYPOINT ["shadowline"]
CMD ["instance"]
