# xentropy: the scoring service as a container image.
#
#   docker build -t xentropy .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp xentropy
#
# Configuration is the XENTROPY_* environment (see the README); PORT is honoured when
# XENTROPY_PORT is not set. With --read-only, mount a tmpfs at /tmp: with
# XENTROPY_WORKERS > 1 the Prometheus multi-process files live there.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a wheel of the project, installed with its dependencies into a venv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
# The dependencies first, from the metadata alone (an empty stand-in package), so that
# this layer stays cached until pyproject.toml changes.
RUN mkdir app xentropy && touch app/__init__.py xentropy/__init__.py \
    && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/deps . \
    && /opt/venv/bin/python -m pip install --no-cache-dir /tmp/deps/*.whl \
    && rm -rf app xentropy build ./*.egg-info /tmp/deps
COPY xentropy ./xentropy
COPY app ./app
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --force-reinstall \
       /wheels/*.whl \
    && /opt/venv/bin/python -m pip check

# ---- runtime: the venv on the same slim base, no build tools, an unprivileged user
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 xentropy \
    && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
       --home-dir /nonexistent --shell /usr/sbin/nologin xentropy
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XENTROPY_HOST=0.0.0.0
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["xentropy", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["xentropy", "serve"]
