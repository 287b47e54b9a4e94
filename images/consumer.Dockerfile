# Every consumer service's image: the service is a build argument. From the repository root:
#   docker build -f images/consumer.Dockerfile --build-arg SERVICE=ranking-consumer -t ranking-consumer .
# images/build.sh uses it for each services/<name> without a Dockerfile of its own. FROM the
# public Python image; images/build.sh (podman or docker) passes a local base and the host's
# CA bundle where that image cannot be pulled (images/README.md).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# The folder under services/ and the console script of the same name.
ARG SERVICE
# Build-stage only: unset unless given, never in the final image.
ARG PIP_CERT
ARG SSL_CERT_FILE
# uv from PyPI (no registry needed), the version that writes uv.lock.
ARG UV_VERSION=0.13.9
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=<services/ folder> is required" >&2; exit 1; }
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && ln -s /opt/uv/bin/uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first: this layer changes only with the lock file.
COPY pyproject.toml uv.lock ./
COPY libs/events/pyproject.toml libs/events/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${SERVICE}"
# Then only the shared library and this service.
COPY libs/events libs/events
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${SERVICE}" \
    && ln -s "/app/.venv/bin/${SERVICE}" /app/entrypoint

# The same base: the venv's python links to the base's interpreter.
FROM ${BASE_IMAGE}
ARG SERVICE
LABEL org.opencontainers.image.title="${SERVICE}"
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --no-log-init --shell /usr/sbin/nologin app
COPY --from=build /app /app
# Bytecode is compiled at build time; the root filesystem may be read-only.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONSUMER_HEALTH_PORT=8080
USER 10001:10001
EXPOSE 8080
# Exec form (an exec-form ENTRYPOINT cannot expand ARG, hence the link to the service's
# script): Python is PID 1 and handles SIGTERM itself (commits, then exits 0).
ENTRYPOINT ["/app/entrypoint"]
CMD ["run"]
