#!/usr/bin/env bash
# Generate Python stubs and .pyi files for every proto under protos/ into OUT (default: services/).
set -euo pipefail
out=${1:-services}
py=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$py"):$PATH"
mapfile -t files < <(cd protos && find tessera -name '*.proto' | sort)
"$py" -m grpc_tools.protoc -Iprotos --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" "${files[@]/#/protos/}"
# Each generated package needs an __init__.py so mypy and importers see a regular package.
for f in "${files[@]}"; do
  d=$(dirname "$f")
  while [ "$d" != "." ]; do
    [ -f "$out/$d/__init__.py" ] || : > "$out/$d/__init__.py"
    d=$(dirname "$d")
  done
done
