# From Neurons to Large Models: build, test and work on the book.
# `make book` and `make test` do all the set-up themselves on a fresh machine (Python 3.11, Node/npm).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
VENDOR := _build/vendor_site/vendor/embed-amd.js
# pytest exit code 5 means "no tests collected": treat it as a failure, never as success.
PYTEST := $(PY) -m pytest

.PHONY: help install book book-fresh test test-lib test-notebooks test-site lint lab bench setup-cells \
        exercises grade clean record-outputs pdf test-colab

help:
	@echo "make book       build the executed HTML book into _build/html (installs everything first)"
	@echo "make test       run every test: lint, library, notebooks, exercises, built site in Chromium"
	@echo "make pdf        the whole book as one PDF -> _build/pdf/book.pdf (and _build/html/book.pdf)"
	@echo "make test-colab run one notebook per chapter and an exercise set as on Colab (docs/colab.md)"
	@echo "make lab        open JupyterLab on the book"
	@echo "make record-outputs  after an intended change of printed output: record the tagged cells' text"
	@echo "make bench      time notebooks, the MLP step against torch, widget latency -> benchmarks/results.*"
	@echo "make exercises  regenerate the student exercise notebooks from their sources"
	@echo "make grade SUBMISSIONS=dir   grade a folder of submitted exercise notebooks"

# ---- set-up ---------------------------------------------------------------------------------------------
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lmbook)" >/dev/null
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENDOR): $(NODE_STAMP) tools/vendor.py $(wildcard book_assets/*.js) | $(STAMP)
	$(PY) tools/vendor.py

install: $(STAMP) $(VENDOR)

# ---- the book -------------------------------------------------------------------------------------------
# Notebooks are executed once per build, side by side on every core, into Jupyter Book's execution cache
# (tools/execute.py); the build then renders them, and a cell that raises fails it. The cache is keyed on each
# notebook's own content only: when lmbook (or a requirement) changed since the last build, it is dropped so that
# every notebook runs again with the new code, and so is Sphinx's record of the pages it has read (.doctrees),
# which would otherwise keep showing the old outputs of every notebook whose file did not change.
BOOK_STAMP := _build/.book-built-stamp
book: install
	@if [ -d _build/.jupyter_cache ] && { [ ! -f $(BOOK_STAMP) ] || \
	    [ -n "$$(find lib requirements.txt -type f -newer $(BOOK_STAMP) | head -n 1)" ]; }; then \
	  echo "lmbook or the requirements changed since the last build: executing every notebook again"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees; fi
	$(PY) tools/execute.py
	LMBOOK_RECORD_WIDGETS=1 $(BIN)/jupyter-book build . -W
	@touch $(BOOK_STAMP)
	@echo "Open _build/html/index.html"

# The whole book as one PDF, printed from the built HTML by Chromium (tools/pdf.py); the site links to it.
pdf: book
	$(PY) tools/pdf.py
	cp _build/pdf/book.pdf _build/html/book.pdf

book-fresh: install
	rm -rf _build/html _build/.jupyter_cache _build/jupyter_execute
	$(MAKE) book

lab: install
	$(BIN)/jupyter lab

# ---- tests ----------------------------------------------------------------------------------------------
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) tools/setup_cell.py --check
	$(PY) tools/exercises.py --check
	$(PY) tools/lint_workflows.py

# Library, reference, grading and notebook-rule tests, on every core (pytest-xdist). One file stays on one worker, so
# that a file-wide fixture (the graded class of tests/test_exercises.py) is computed once, not once per worker.
test-lib: install
	$(PYTEST) tests --ignore=tests/site -q -n auto --dist loadfile --durations=10

# The built book: each tagged cell printed its recorded text (tests/notebook_outputs.json), and the site works in
# Chromium; its PDF reads back. Nothing is executed again: the build ran every notebook once. One test file per
# worker: the reading checks (axe-core, dark mode, phone width) take one core while the other files take the other.
test-site: book pdf
	$(PYTEST) tests/site -q -n auto --dist loadfile --durations=5

# Not part of `make test`: execute every chapter notebook a second time, in a fresh kernel each (nbval); tagged cells
# must print their recorded text there too (conftest.py). One thread each, as tools/execute.py runs them.
test-notebooks: book
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PYTEST) --nbval-lax -p no:cacheprovider chapters -q

# The Colab path, as Colab runs it: a fresh venv holding lmbook's dependencies at pyproject's lower bounds, then each
# notebook's own set-up cell installs lmbook from a wheel of this checkout (docs/colab.md). CI runs it after make test.
test-colab: $(STAMP)
	$(PY) tools/colab_check.py

# After an intended change of what a tagged cell prints: record the new text from the last build, then commit
# tests/notebook_outputs.json with the change.
record-outputs: book
	$(PY) -m tests.determinism

test: lint test-lib book test-site

bench: install
	$(PY) benchmarks/run.py

# ---- exercises ------------------------------------------------------------------------------------------
# Regenerates exercises/NAME.ipynb and lmbook's public tests from exercises/source/NAME.ipynb (otter assign).
exercises: $(STAMP)
	$(PY) tools/exercises.py

# Grades every notebook in a folder: make grade SUBMISSIONS=path/to/folder [GRADE_ARGS="--jobs 2"]
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/folder"; exit 2; }
	$(PY) tools/grade.py "$(SUBMISSIONS)" $(GRADE_ARGS)

setup-cells: $(STAMP)
	$(PY) tools/setup_cell.py --write

clean:
	rm -rf _build
