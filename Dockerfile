# syntax=docker/dockerfile:1.7
# One image per capability: the tessera package with one pyproject extra (the capability's own dependencies).
#   docker build --build-arg EXTRA=keyframes -t <registry>/tessera-keyframes:0.1.0 .
#   docker run --rm -p 50051:50051 -e TESSERA_TRITON_URL=triton:8001 <registry>/tessera-keyframes:0.1.0 serve keyframes
#   docker build --build-arg EXTRA=translation -t <registry>/tessera-translation:0.1.0 .
#     (its gateway runs `serve translation`, its NATS stage workers `work translation asr|mt|tts`, same image)
#   docker build --build-arg EXTRA=cry,cry-models,cry-federation \
#     --build-arg APT_PACKAGES="sound-theme-freedesktop alsa-utils" -t <registry>/tessera-cry-federation:0.1.0 .
#     (the cry federation's ServerApp: the chart runs `flower-superexec` from it; torch comes from TORCH_INDEX_URL)
# Runs as uid 10001 and writes nothing outside /tmp, so it works with readOnlyRootFilesystem (the chart mounts an
# emptyDir on /tmp). Models are not in this image: they live in the Triton image (deploy/triton/Dockerfile).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The pyproject extra(s) to install, e.g. "keyframes" or "keyframes,translation".
ARG EXTRA=keyframes
# Extras that pull torch (cry-models, cry-federation) get it from this index first: CPU wheels unless you point it at
# a CUDA one (PyPI's default Linux torch carries CUDA, gigabytes the CPU-only reference models never use).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tessera/venv
ENV PATH=/opt/tessera/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN case ",${EXTRA}," in *",cry-models,"*|*",cry-federation,"*) pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0" ;; esac \
 && pip install ".[${EXTRA}]" \
 && python -m compileall -q /opt/tessera/venv/lib \
 && tessera --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG EXTRA=keyframes
# Debian packages the extra needs at run time, e.g. the system sounds the cry federation's validation families are
# mixed from ("sound-theme-freedesktop alsa-utils", as deploy/triton/Dockerfile's CRY_APT_PACKAGES). Empty: none.
ARG APT_PACKAGES=""
LABEL org.opencontainers.image.title="tessera-${EXTRA}" \
      org.opencontainers.image.description="Tessera gRPC service (extra: ${EXTRA})"
RUN if [ -n "${APT_PACKAGES}" ]; then \
      apt-get update && apt-get install -y --no-install-recommends ${APT_PACKAGES} && rm -rf /var/lib/apt/lists/*; \
    fi
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
