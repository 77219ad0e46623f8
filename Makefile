# The two commands of the README, and the steps they need. Each target installs what it
# uses, so a fresh machine needs only python3 (3.11+), make and, for the browser test,
# Debian's apt (chromium) and npm (wrangler, for the deploy dry-run; Pyodide, for the
# Worker bundle under the runtime Cloudflare uses).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test lint bench install browser-deps pyodide-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

## JupyterLab on the quickstart notebook (offline model unless ANTHROPIC_API_KEY is set).
lab: $(STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/quickstart.ipynb

## Chromium for the browser test, wrangler for the deploy dry-run.
browser-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x .ci/node/node_modules/.bin/wrangler || npm install --silent --prefix .ci/node wrangler@4.86.0 >/dev/null

## Pyodide, SQLite (wasm) and ws from npm, pydantic's wasm wheels and anyio from PyPI, pinned in
## helix_lab/pyodide_host and cached under .ci/ (node/, wheels/): the Pyodide test tier
## and `helix serve --engine pyodide` run the Worker bundle with them.
pyodide-deps: $(STAMP)
	@$(BIN)/python -m helix_lab.pyodide_host install >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check helix_lab tests benchmarks

## Every test: unit, end to end, browser, and the notebooks under nbval.
test: export HELIX_WRANGLER = $(CURDIR)/.ci/node/node_modules/.bin/wrangler
test: $(STAMP) browser-deps pyodide-deps lint
	$(BIN)/pytest tests -q
	env -u ANTHROPIC_API_KEY $(BIN)/pytest --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .ci/node .ci/wheels .helix artifacts
