# lrstudy -- reproducing CLR, SGDR and super-convergence.
#
#   make test                       install into .venv (first time), lint (ruff), run pytest + nbval (smoke profile)
#   make lint                       ruff check src tests
#   make reproduce [PROFILE=cpu|fast|full|smoke] [DATA=cifar10|path] [NOTEBOOKS="clr_cifar10 ..."] [TRAIN=no]
#                  [DATA_CIFAR100=cifar100|path] [DATA_MNIST=mnist|path]
#                                   execute notebooks with papermill (into build/pages/) and publish each page into
#                                   results/<profile>/ (+ HTML, and a reader's HTML without code:
#                                   <notebook>.reader.html) if it shows at least the runs of the page there
#   make pages-check [SHOTS=dir]    the page test on every page under results/, and headless-Chromium screenshots
#                                   (network off) into SHOTS where Chromium is installed
#   make readme PROFILE=cpu [DATA=...]   regenerate the README's scorecard table from that profile's runs
#   make bench [QUICK=1]            speed benchmark on this machine's device -> results/bench/<device>.{csv,md}
#   make gpu-check                  can this machine run the study? one row per check, 110 s budget -> results/gpu-check.md
#   make plans                      results/plan/{fast,full}.txt (what each profile trains, estimated time) + README table
#   make gpu-window MINUTES=8 OUT=dir [DATA=...] [PROFILE=fast]
#                                   a lent GPU's one command: gpu-check, measurements, the profile's runs in
#                                   priority order, ending 60 s before MINUTES; OUT fills as it goes (kill-safe;
#                                   `python -m lrstudy import OUT` at home). Needs no .venv, papermill, jupyter,
#                                   git or network: GPU_PYTHON (python3) with torch. Without make: see README
#   make lab                        JupyterLab on notebooks/ with the study's kernel
#   make clean                      remove smoke outputs, failed executions and caches (keeps results)
#   make distclean                  also remove .venv and data/

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions for the project's own venv; pyproject.toml only asks for ranges (torch>=2.4),
# so installing the package into an environment with its own CUDA build keeps that build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# In the order a reader meets them; the scorecard last, as it reads every other notebook's runs.
# tests/test_experiments.py checks this list against lrstudy.experiments.EXPERIMENTS and notebooks/.
NOTEBOOKS ?= schedules clr_range_test clr_cifar10 clr_adaptive clr_architectures sgdr super_convergence scorecard
DATA ?=
# TRAIN=no renders what the run store holds and trains nothing (missing runs show as "not run yet"):
# for a machine that should only render runs trained elsewhere (a GPU box, the CPU campaign).
TRAIN ?= yes
# Where executed notebooks and the run store go (results/<profile>/...); the tests point it elsewhere.
RESULTS ?= results
export LRSTUDY_RESULTS := $(abspath $(RESULTS))
# Jupyter looks here first, so papermill's `-k python3` is this venv's kernel, whatever else the
# user has registered under that name.
export JUPYTER_PATH := $(abspath $(VENV))/share/jupyter
export PYTHONNOUSERSITE := 1

.PHONY: test lint reproduce notebooks pages-check readme bench gpu-check plans gpu-window lab clean distclean venv FORCE
.DELETE_ON_ERROR:

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lrstudy)"
	touch $@

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests

# PROFILE defaults to `fast` where torch sees a CUDA GPU, else `cpu`; the choice is printed.
# results/ is touched only once reproduce can succeed: the data every missing run needs is found
# first (else one message, exit 2, within seconds); pages render into $(BUILD)/pages/<profile>/
# (a failed one into $(BUILD)/failed/<profile>/), and a page replaces the one in results/ only if
# it shows at least that page's finished runs (lrstudy.reproduce). The venv is up to date by then
# (-o: the sub-make does not check it again).
reproduce: $(STAMP)
	@profile="$(PROFILE)"; \
	if [ -z "$$profile" ]; then \
	  if $(BIN)/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then profile=fast; \
	  else profile=cpu; fi; \
	  echo "PROFILE not set: using '$$profile' ($$( [ $$profile = fast ] && echo 'CUDA GPU found' || echo 'no CUDA GPU'))"; \
	fi; \
	$(BIN)/python -m lrstudy preflight --profile $$profile $(CLI_DATA) $(if $(filter no,$(TRAIN)),--no-train) $(NOTEBOOKS) || exit 2; \
	$(MAKE) --no-print-directory --keep-going -o $(STAMP) notebooks PROFILE=$$profile; status=$$?; \
	echo; echo "== make reproduce, profile '$$profile' =="; \
	rendered=; \
	for nb in $(NOTEBOOKS); do \
	  if [ -f $(BUILD)/pages/$$profile/$$nb.html ]; then rendered="$$rendered $$nb"; \
	  else echo "  FAILED  $$nb -> $(BUILD)/failed/$$profile/$$nb.ipynb (the page in $(RESULTS)/$$profile is kept)"; status=1; fi; \
	done; \
	if [ -n "$$rendered" ]; then $(BIN)/python -m lrstudy publish --profile $$profile --from $(BUILD)/pages/$$profile $$rendered || status=1; fi; \
	$(BIN)/python -m lrstudy status --profile $$profile $(CLI_DATA) --training-data $(if $(filter no,$(TRAIN)),--missing-ok) $(NOTEBOOKS) || status=1; \
	if [ $$status = 0 ]; then $(BIN)/python -m lrstudy scorecard --profile $$profile $(CLI_DATA) --training-data --index > /dev/null \
	  && echo "  index   $(RESULTS)/$$profile/index.html" || status=1; \
	else echo "  index   $(RESULTS)/$$profile/index.html kept (not every page was published)"; fi; \
	$(BIN)/python -m lrstudy.pages link $(RESULTS)/$$profile || status=1; \
	exit $$status

# Where pages render before they are published into $(RESULTS)/<profile>/
BUILD ?= build
STAGE = $(BUILD)/pages/$(PROFILE)
# A path given as DATA is made absolute for the commands run here; a name (cifar10) is kept.
DATA_PATH = $(if $(wildcard $(DATA)),$(abspath $(DATA)),$(DATA))
# Papermill gets a path relative to notebooks/ (where the notebooks run), so that a rendered notebook
# names no folder of the machine that ran it.
nb_path = $(if $(wildcard $(1)),$(shell $(PYTHON) -c 'import os, sys; print(os.path.relpath(sys.argv[1], "notebooks"))' "$(abspath $(1))"),$(1))
DATA_ARG = $(if $(DATA),-p data "$(call nb_path,$(DATA))") $(foreach set,CIFAR100 MNIST,$(if $(DATA_$(set)),-p data_$(shell echo $(set) | tr A-Z a-z) "$(call nb_path,$(DATA_$(set)))"))
# The same sources for the commands run here (status, scorecard): --data, --data-cifar100, --data-mnist,
# a path made absolute
cli_path = $(if $(wildcard $(1)),$(abspath $(1)),$(1))
CLI_DATA = $(if $(DATA),--data "$(DATA_PATH)") $(foreach set,CIFAR100 MNIST,$(if $(DATA_$(set)),--data-$(shell echo $(set) | tr A-Z a-z) "$(call cli_path,$(DATA_$(set)))"))

notebooks: $(NOTEBOOKS:%=$(STAGE)/%.html)

# Always executed (FORCE): the run store, not Make, knows what is up to date; a notebook whose
# runs exist only reads them. Pages render into $(STAGE), never straight into results/ (publish
# copies them there); a notebook that fails leaves its copy in $(BUILD)/failed/<profile>/.
$(STAGE)/%.html: notebooks/%.ipynb $(STAMP) FORCE
	@test -n "$(PROFILE)" || { echo "PROFILE is not set"; exit 2; }
	@mkdir -p $(STAGE) $(BUILD)/failed/$(PROFILE)
	@rm -f $(STAGE)/$*.ipynb $@ $(BUILD)/failed/$(PROFILE)/$*.ipynb
	LRSTUDY_PROGRESS=terminal LRSTUDY_TRAIN=$(TRAIN) $(BIN)/papermill -k python3 --cwd notebooks -p profile $(PROFILE) $(DATA_ARG) $< $(STAGE)/$*.partial.ipynb \
	  || { mv -f $(STAGE)/$*.partial.ipynb $(BUILD)/failed/$(PROFILE)/$*.ipynb 2>/dev/null; exit 1; }
	mv $(STAGE)/$*.partial.ipynb $(STAGE)/$*.ipynb
	$(BIN)/python -m lrstudy.pages render $(STAGE)/$*.ipynb > /dev/null

FORCE:

# The page test on every page under $(RESULTS) (truncated tables, raw TeX, machine paths, progress
# bars, dead links, headers against the run records), then -- where Chromium is installed -- a
# screenshot of each page with the network off, into SHOTS for a person to look at.
SHOTS ?= /tmp/lrstudy-pages
pages-check: $(STAMP)
	@$(BIN)/python -m lrstudy.pages check $(RESULTS); status=$$?; \
	$(BIN)/python -m lrstudy.pages screenshot $(RESULTS) $(SHOTS); exit $$status

bench: $(STAMP)
	$(BIN)/python -m lrstudy.bench $(if $(QUICK),--quick) --out $(RESULTS)/bench

gpu-check: $(STAMP)
	$(BIN)/python -m lrstudy gpu-check --out $(RESULTS)/gpu-check.md

# The paper-budget CPU campaign's machine, measured by bench --campaign: one of its two 1-thread
# workers side by side, as the campaign trains (the Intel Xeon that trains it since 2026-12-07)
CAMPAIGN_BENCH ?= $(RESULTS)/bench/cpu-intel-r-xeon-r-processor-1-threads-campaign-side-a.csv

plans: $(STAMP)
	@mkdir -p $(RESULTS)/plan
	for profile in fast full; do $(BIN)/python -m lrstudy plan all --profile $$profile > $(RESULTS)/plan/$$profile.txt || exit 1; done
	if [ -f $(CAMPAIGN_BENCH) ]; then for precision in fp32 bf16; do \
	  { echo; echo "# The CPU campaign (issue 26): ResNet-56's range test, $$precision, one 1-thread worker per seed, on CIFAR-10 (JPEG q75 copy)"; \
	    $(BIN)/python -m lrstudy plan super_convergence --profile full --device cpu --precision $$precision --data cifar10-jpeg \
	      --only "range test 0-3: ResNet-56" --seed-range 1-2 --bench $(CAMPAIGN_BENCH); } >> $(RESULTS)/plan/full.txt || exit 1; done; fi
	$(BIN)/python -m lrstudy budgets --readme > /dev/null

# No $(STAMP): the GPU machine has torch but no venv and no network; the code runs from src/.
GPU_PYTHON ?= python3
MINUTES ?=
gpu-window:
	@test -n "$(MINUTES)" -a -n "$(OUT)" || { echo "make gpu-window needs MINUTES=<minutes> OUT=<folder>"; exit 2; }
	@$(GPU_PYTHON) -c 'import torch' 2>/dev/null || { echo "make gpu-window: $(GPU_PYTHON) cannot import torch; give GPU_PYTHON=<a python with torch>"; exit 2; }
	PYTHONPATH=$(abspath src)$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m lrstudy gpu-window \
	  --minutes $(MINUTES) --out "$(OUT)" --profile $(or $(PROFILE),fast) $(if $(DATA),--data "$(DATA_PATH)")

readme: $(STAMP)
	@test -n "$(PROFILE)" || { echo "make readme needs PROFILE=..."; exit 2; }
	$(BIN)/python -m lrstudy scorecard --profile $(PROFILE) $(CLI_DATA) --readme > /dev/null

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(RESULTS)/smoke .pytest_cache $(RESULTS)/*/locks
	rm -f $(RESULTS)/*/*.partial.ipynb $(RESULTS)/*/*.failed.ipynb
	rm -rf $(BUILD)/pages $(BUILD)/failed
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) data
