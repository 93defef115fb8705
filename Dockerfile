# syntax=docker/dockerfile:1.7
# One image per capability: the tessera package with one pyproject extra (the capability's own dependencies).
#   docker build --build-arg EXTRA=keyframes -t <registry>/tessera-keyframes:0.1.0 .
#   docker run --rm -p 50051:50051 -e TESSERA_TRITON_URL=triton:8001 <registry>/tessera-keyframes:0.1.0 serve keyframes
#   docker build --build-arg EXTRA=translation -t <registry>/tessera-translation:0.1.0 .
#     (its gateway runs `serve translation`, its NATS stage workers `work translation asr|mt|tts`, same image)
# Runs as uid 10001 and writes nothing outside /tmp, so it works with readOnlyRootFilesystem (the chart mounts an
# emptyDir on /tmp). Models are not in this image: they live in the Triton image (deploy/triton/Dockerfile).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The pyproject extra(s) to install, e.g. "keyframes" or "keyframes,translation".
ARG EXTRA=keyframes
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tessera/venv
ENV PATH=/opt/tessera/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install ".[${EXTRA}]" \
 && python -m compileall -q /opt/tessera/venv/lib \
 && tessera --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG EXTRA=keyframes
LABEL org.opencontainers.image.title="tessera-${EXTRA}" \
      org.opencontainers.image.description="Tessera gRPC service (extra: ${EXTRA})"
RUN groupadd --gid 10001 tessera \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tessera
COPY --from=build /opt/tessera/venv /opt/tessera/venv
ENV PATH=/opt/tessera/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TESSERA_HOST=0.0.0.0 \
    TESSERA_CAPABILITY=${EXTRA}
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9090
ENTRYPOINT ["tessera"]
CMD ["--help"]
