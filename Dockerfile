# syntax=docker/dockerfile:1
# harmony-pipes: every command (harmony-events, harmony-alerts, s3-batch, aws-discovery,
# hec-emulator, harmony-pipes) in one slim image, run as an unprivileged user.
#
#   docker build -t harmony-pipes:0.1.0 .
#   docker run --rm harmony-pipes:0.1.0 harmony-alerts --version
#   docker run --rm -e HARMONY_CLIENT_ID -e HARMONY_ACCESS_KEY harmony-pipes:0.1.0 harmony-events test --region eu
#
# deploy/kubernetes/ runs this image; deploy/README.md says how.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the project's wheel and its dependencies' wheels (all of them exist as binary
#     wheels, so no compiler is needed here either)
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugins/ plugins/
COPY schemas/ schemas/
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed (mounted from the build stage, so they are not left in a
#     layer), a non-root user, nothing else
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 harmony \
    && useradd --system --uid 10001 --gid harmony --home-dir /var/lib/harmony-pipes --create-home \
        --shell /usr/sbin/nologin harmony
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels harmony-pipes
# each command keeps its state in its own subfolder of this root (mount a volume here)
ENV HARMONY_PIPES_STATE_DIR=/var/lib/harmony-pipes \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/harmony-pipes
USER 10001:10001
# --metrics-addr 0.0.0.0:9464 serves /metrics and /healthz (deploy/kubernetes)
EXPOSE 9464
CMD ["harmony-pipes", "--help"]
