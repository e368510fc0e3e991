# The two commands a reader needs: `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv book test test-fast test-other-cpu notebooks lab clean

# Make the virtual environment once, and again whenever requirements.txt or pyproject.toml change.
venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Build the rendered book into _build/html (executes the chapters in the active profile; a page
# whose code, genlib and profile are unchanged since the last build comes from the execution
# cache), printing the plan and one line per page, then one line: the build's verdicts (the
# chapters save them in _build/verdicts; a failed invariant stops its page and the build).
# `make book PAGES="07 appD"` builds those pages only, into _build/pages/_build/html.
PAGES ?=
book: venv
	$(BIN)/python book/build.py --pages "$(PAGES)"

# Every test: genlib unit tests, kernel tests, nbval on the stored notebooks, the pairing check
# and a full book build with warnings as errors, all in the `ci` profile with a cold model cache.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900
test: venv
	$(BIN)/python -m pytest tests chapters $(NBVAL)

# The same tests with the numeric kernels an AMD EPYC (Zen 2/3, no AVX-512) gets: PyTorch's AVX2
# kernels, MKL's and oneDNN's AVX2 code paths, OpenBLAS's Zen kernels for NumPy (the Triton
# interpreter's tl.dot). Outputs that hold only on the build machine's own rounding fail here.
OTHER_CPU := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Zen
test-other-cpu: venv
	$(OTHER_CPU) $(BIN)/python -m pytest tests chapters $(NBVAL)

# Unit tests only (no notebooks, no book build).
test-fast: venv
	$(BIN)/python -m pytest tests -m "not slow"

# Re-execute the chapters in the `ci` profile (cold cache) to refresh their stored outputs.
notebooks: venv
	$(BIN)/python tests/refresh_notebooks.py $(CHAPTERS)

# Open the chapters in JupyterLab (jupytext pairs each .md with its .ipynb). The project's Lab
# settings (book/jupyterlab/overrides.json, copied into the venv) open a chapter's .md as a
# notebook on double-click; chapters/jupytext.toml pins what a save writes to the pair.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
lab: venv
	mkdir -p $(LAB_SETTINGS) && cp book/jupyterlab/overrides.json $(LAB_SETTINGS)/overrides.json
	$(BIN)/jupyter lab chapters

clean:
	rm -rf _build
