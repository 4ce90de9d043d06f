# make demo: create .venv, install, run the main job on the embedded dataset.
# make test: same install, run the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) runs
