# Targets a newcomer can guess. `make test` is what CI runs (.ci/run): it builds .venv from the
# pinned requirements, then lints (ruff, cfn-lint, the complexity limit, the import contracts),
# type-checks and runs every test offline.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := layers/shared/vpsbackup functions devtools console/vpsbackup_console console/vpsbackup_local
PORT ?= 8080

.PHONY: help venv lint security typecheck test test-compat artifact-check test-unit test-integration fmt demo simulator invoke bench bench-quota mutate build validate deploy clean

help:
	@echo "make test       lint + type-check + all tests + the artifact check (what CI runs)"
	@echo "make artifact-check  build the layer as sam build does, zip it as SAM does, import every handler"
	@echo "make demo       the whole story on the local simulator: deploy, prune, alarm and restore"
	@echo "make simulator  run the local VPS API simulator on 127.0.0.1:$(PORT), with the demo fleet"
	@echo "make invoke EVENT=events/<file>.json [FN=<function>]   invoke a handler locally (events/README.md)"
	@echo "make bench      benchmarks (results in docs/benchmarks.md)"
	@echo "make bench-quota  prune, a 500-server deploy and 3 alarms on one provider quota, real time (~10 min)"
	@echo "make mutate [MODULES=restore/point.py]  mutation testing of the decision modules (docs/mutation.md)"
	@echo "make security   checkov on template.yaml and on its SAM expansion, offline (also part of make lint)"
	@echo "make venv       .venv with the pinned dependencies and the vpsbackup console (.venv/bin/vpsbackup)"
	@echo "make lint       ruff, ruff format --check, cfn-lint, checkov, the complexity limit, the import contracts"
	@echo "make typecheck  mypy --strict"
	@echo "make test-unit  the unit tests;  make test-integration: the integration tests (simulator and moto)"
	@echo "make fmt        ruff format and ruff check --fix"
	@echo "make build      sam build;  make validate: sam validate --lint;  make deploy: sam deploy --guided"
	@echo "make clean      remove the virtualenvs, the build and every cache"

# The project itself is installed too (editable): the `vpsbackup` console script, which the
# console's tests run as a subprocess.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt console/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP) security
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m devtools.check_complexity
	PYTHONPATH=layers/shared $(BIN)/lint-imports --no-cache --no-logo

# checkov in its own venv (it pins boto3 and packaging below the dev pins), from
# requirements-security.txt. Offline: --skip-download keeps it from fetching guidelines. Every
# finding it does not fix in the template is skipped there, with the reason, next to the resource.
SEC_VENV := .venv-security
SEC_STAMP := $(SEC_VENV)/.installed
$(SEC_STAMP): requirements-security.txt
	$(PYTHON) -m venv $(SEC_VENV)
	$(SEC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SEC_VENV)/bin/python -m pip install --quiet -r requirements-security.txt
	touch $(SEC_STAMP)

# Twice: the source template, and the template as SAM expands it (the generated roles, the
# Function URL and its permissions), offline, with the pinned aws-sam-translator.
EXPANDED := $(SEC_VENV)/template.expanded.json
security: $(SEC_STAMP)
	$(SEC_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	$(SEC_VENV)/bin/python -m devtools.sam_expand template.yaml $(EXPANDED)
	$(SEC_VENV)/bin/checkov -f $(EXPANDED) --framework cloudformation --quiet --compact --skip-download

typecheck: $(STAMP)
	$(BIN)/mypy $(SRC)

test: lint typecheck
	$(BIN)/python -m pytest -n 2 -q
	$(MAKE) --no-print-directory test-compat
	$(MAKE) --no-print-directory artifact-check

# The unit tests again on the newest Python the Lambda runtime uses (3.13), when this machine has
# it (pyenv's shims need PYENV_VERSION to expose it). Skipped, saying so, where it is absent.
COMPAT_PYTHON ?= python3.13
COMPAT_VENV := .venv-compat
test-compat:
	@if PYENV_VERSION=$${PYENV_VERSION:-3.13.0} $(COMPAT_PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
		if [ ! -f $(COMPAT_VENV)/.installed ] || [ requirements-dev.txt -nt $(COMPAT_VENV)/.installed ]; then \
			PYENV_VERSION=$${PYENV_VERSION:-3.13.0} $(COMPAT_PYTHON) -m venv $(COMPAT_VENV) && \
			$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip && \
			$(COMPAT_VENV)/bin/python -m pip install --quiet -r requirements-dev.txt && touch $(COMPAT_VENV)/.installed; \
		fi && $(COMPAT_VENV)/bin/python -m pytest -n 2 -q -p no:cacheprovider tests/unit; \
	else echo "test-compat: skipped, no $(COMPAT_PYTHON) on this machine"; fi

# What Lambda will run: the layer built by its own recipe (layers/shared/Makefile, for this host's
# architecture), zipped with SAM's 1980 dates and unzipped, then every handler imported by a fresh
# Python 3.13 that has only boto3 (.venv-artifact), with the template's environment: each import
# succeeds, no layer module is compiled from source, the layer holds neither the runtime's boto3
# tree nor bin/ scripts. The layer's wheels are downloaded once into .cache/artifact/. Skipped,
# saying so, where this machine has no Python 3.13.
artifact-check: $(STAMP)
	$(BIN)/python -m devtools.artifact

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

simulator: $(STAMP)
	$(BIN)/python -m devtools.simulator --port $(PORT)

demo: $(STAMP)
	$(BIN)/python -m devtools.demo

invoke: $(STAMP)
	$(BIN)/python -m devtools.invoke $(FN) $(EVENT)

bench: $(STAMP)
	$(BIN)/python -m devtools.bench

# The three jobs on one provider quota at 1 request/second, in real time (docs/benchmarks.md).
bench-quota: $(STAMP)
	$(BIN)/python -m devtools.bench_quota

# Mutation testing of the decision modules (docs/mutation.md); not part of make test. MODULES=restore/point.py for some.
mutate: $(STAMP)
	$(BIN)/python -m devtools.mutate $(MODULES)

# sam is a build/deploy tool, kept out of the test dependencies. The layer's build
# (layers/shared/Makefile) byte-compiles for the runtime with python3.13, which must be on PATH
# (with pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0 make build).
build:
	@if python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then PY=$$(command -v python3.13); echo "make build: SharedLayer is built and byte-compiled for Lambda's Python 3.13 with $$PY"; \
	else echo "make build: the layer needs Lambda's Python 3.13: put python3.13 on PATH (e.g. PYENV_VERSION=3.11.7:3.12.1:3.13.0 make build)" >&2; exit 1; fi
	sam build

validate:
	sam validate --lint

deploy: build
	sam deploy --guided

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(SEC_VENV) .venv-artifact .cache .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
