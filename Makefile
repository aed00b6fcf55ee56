# Two commands for a fresh clone: `make run` and `make test`.
# Everything runs from the repository root inside .venv; the venv is (re)installed only
# when a requirements file is newer than .venv/.stamp.

PY      ?= $(shell command -v python3.11 2>/dev/null || echo python3)
PORT    ?= 8501
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.stamp
REQS    := $(wildcard requirements*.txt) pyproject.toml
CHROMIUM := /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: venv browser run test bench sample-data clean distclean help

help:
	@echo "make run          start the dashboard on http://localhost:$(PORT) (PORT=... to change)"
	@echo "make test         run the whole test suite (installs .venv and Chromium if needed)"
	@echo "make bench        run every benchmarks/bench_*.py, print name=value lines"
	@echo "make sample-data  regenerate sample_data/"
	@echo "make clean        remove caches (distclean also removes .venv)"

venv: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(VPY) || { echo "creating $(VENV) with $(PY)"; $(PY) -m venv $(VENV); }
	$(VPY) -m pip install -r requirements-dev.txt
	$(VPY) -m pip install --no-deps --no-build-isolation -e .
	@touch $@

# The browser tests drive Debian's Chromium; `playwright install` cannot download here.
browser:
	@if [ -x $(CHROMIUM) ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium from Debian"; \
		DEBIAN_FRONTEND=noninteractive apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
	else \
		echo "*** $(CHROMIUM) is missing: run 'sudo apt-get install chromium fonts-dejavu-core'."; \
		echo "*** Browser tests will be skipped (and fail when CI=true)."; \
	fi

# fusion_core and app are installed editable in .venv (pyproject.toml), so the app imports
# them from wherever it is started.
run: venv
	$(VPY) -m streamlit run app/main.py --server.port $(PORT) --browser.gatherUsageStats false

test: venv browser
	$(VPY) -m pytest -q $(PYTEST_ARGS)

bench: venv browser
	$(VPY) benchmarks/run_all.py

sample-data: venv
	$(VPY) -m fusion_core make-sample-data --out sample_data

clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis .bench

distclean: clean
	rm -rf $(VENV)
