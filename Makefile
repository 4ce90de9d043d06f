# make demo: create .venv, install, run the main job on the embedded dataset.
# make test: same install, run the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean plain-check

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/archlab study run studies/quickstart.yaml --out runs/quickstart --workers 2

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

# plain-check: a plain `pip install .` (no extras) in its own environment gives a working CLI: the
# help, and a smoke study end to end (CI runs it before the suite; issue 22).
PLAIN := .venv-plain
plain-check:
	rm -rf $(PLAIN) && $(PYTHON) -m venv $(PLAIN)
	$(PLAIN)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(PLAIN)/bin/pip install -q -c constraints.txt .
	cd /tmp && $(CURDIR)/$(PLAIN)/bin/archlab --help >/dev/null
	d=$$(mktemp -d) && cd /tmp && $(CURDIR)/$(PLAIN)/bin/archlab study run $(CURDIR)/studies/quickstart.yaml --smoke --out $$d/quick --workers 1 && rm -rf $$d

clean:
	rm -rf $(VENV) $(PLAIN) runs
