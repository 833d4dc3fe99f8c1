# Fresh-machine set-up is part of both targets: a local venv, the CPU build of torch from local disk, leansr.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.leansr-installed

.PHONY: demo test test-all

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

# Main job: upscale the bundled example images with the built-in default model.
demo: $(STAMP)
	$(VENV)/bin/leansr upscale examples -o outputs/examples

# The test suite as CI runs it (slow tests excluded; `make test-all` includes them).
test: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -n 2
