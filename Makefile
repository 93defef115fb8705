SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tessera-installed
OPENCV_DOC := build/media/opencv-doc
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: bench-keyframes-cache install protos protos-check models media lint charts k8s test test-fast run up down demo bench-inference bench-proxy loadtest plan clean

install: $(STAMP)
$(STAMP): pyproject.toml scripts/install.sh
	scripts/install.sh
	@touch $@

protos: install
	scripts/gen_protos.sh services

# Fails when the committed stubs differ from what the protos generate.
protos-check: install
	@tmp=$$(mktemp -d) && scripts/gen_protos.sh $$tmp >/dev/null && \
	  for f in $$(cd $$tmp && find tessera -name '*_pb2*'); do \
	    cmp -s $$tmp/$$f services/$$f || { echo "stale stub: services/$$f (run make protos)"; rm -rf $$tmp; exit 1; }; \
	  done; rm -rf $$tmp; echo "protos: stubs up to date"

# Every capability's own networks (tessera.<capability>.training: seeded, skipped when current), then the repository.
models: install media
	$(VENV)/bin/tessera models train --out build/trained
	$(VENV)/bin/tessera models build

media: $(OPENCV_DOC)/vtest.avi
$(OPENCV_DOC)/vtest.avi:
	scripts/fetch_media.sh $(OPENCV_DOC)

lint: install protos-check
	$(VENV)/bin/ruff check services tests benchmarks k8s deploy loadtest
	$(VENV)/bin/ruff format --check services tests benchmarks k8s deploy loadtest
	$(VENV)/bin/mypy services

# Helm chart + kustomize: helm lint --strict, helm template per values file, kubernetes-validate, CRD schemas.
charts: install
	scripts/charts_check.sh

k8s: install
	$(PY) k8s/generate.py

test: install lint charts models media
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q tests/unit

# Everything from nothing: install, stubs, models, media, the stack, the demos; serves until Ctrl-C.
run: install protos models media
	$(VENV)/bin/tessera up --demo

up: install models media
	$(VENV)/bin/tessera up --detach

down:
	$(VENV)/bin/tessera down

demo:
	$(VENV)/bin/tessera demo

bench-inference: install
	$(PY) benchmarks/runtime/inference_overhead.py

bench-proxy: install models media
	$(PY) benchmarks/runtime/proxy_floor.py

# A second query on the same hour of video: what the thumbnail and detection caches save.
bench-keyframes-cache: install models media
	$(PY) benchmarks/keyframes/second_query.py

# Room monitoring on held-out long recordings: precision, recall, F1, false alarms per hour (offline, detections cached).
bench-monitoring-heldout: install models media
	$(PY) benchmarks/monitoring/heldout.py

# One target per capability benchmark: bench-<capability> runs benchmarks/<capability>/run.py.
bench-%: install models media
	$(PY) benchmarks/$*/run.py

# Load tests on loopback (smoke profile, < 5 min, own stack on free ports); reports in loadtest/results/, then the plan.
loadtest: install models media
	$(PY) -m loadtest
	$(VENV)/bin/tessera plan

plan: install
	$(VENV)/bin/tessera plan

clean:
	rm -rf build
