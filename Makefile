# One command sets up a fresh machine and runs the tests: `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The built-in default: transfer attack + CD-GAN + baselines on CIFAR-10 with the shipped
# weights (< 5 minutes on a 2-core CPU); results in results/demo.
demo: $(STAMP)
	PY=$(PY) bash experiments/cifar10/demo.sh

# The whole suite (under 10 minutes on a 2-core CPU machine).
test: $(STAMP)
	$(PY) -m pytest -q -ra

# Everything except tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
