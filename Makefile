# make demo   : fresh machine -> .venv, install, train the default synthetic config, print results, write its dashboard
# make test   : the test suite (what CI runs, after make lint); make test-slow adds the slow tests
# make lint   : ruff's lint and format check (pyproject.toml)
# make mutation: mutation testing of the core maths (tools/mutation.py; slow, not in make test)
# make browser: Debian's chromium for the dashboard's browser test (skipped with the reason without it)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint install browser mutation clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=70"
	# torch first, pinned: 2.13.0 is the CPU build; anything unpinned would pull CUDA wheels
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# the package itself, editable: anyquantile.model is model/ of this checkout (pyproject.toml)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The config trains in bf16 autocast; on a CPU without native bf16 (emulated: many times slower) in fp32.
demo: $(STAMP)
	$(PY) train_adaptive_attention.py --config config/nbeatsaq-synthetic.yaml --dashboard \
	  $$($(PY) -c "from anyquantile.training.cpu import native_bf16; print('' if native_bf16() else 'trainer.precision=32-true')")

browser:
	@command -v chromium >/dev/null || { \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium: the dashboard's browser test will be skipped"; }

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# mutmut over modules/attention, losses, level_sampling, rearrangement and model/metrics, in a copy of the
# checkout; the report (kill rate per file, survivors' diffs) goes to docs/records/mutation.md, read in
# docs/mutation.md. Tens of minutes.
mutation: $(STAMP)
	$(PY) -m tools.mutation --jobs 3 --out docs/records/mutation.md

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
