# rr-audiocraft: `make demo` (the main job) and `make test`; everything installs itself into .venv/.
PY := .venv/bin/python
export PYTHONWARNINGS ?= ignore::UserWarning
# Where demo and reproduce train and generate: auto is CUDA when torch sees a GPU, else the CPU.
DEVICE ?= auto

.PHONY: install codec judge demo reproduce lint test test-stock test-cluster slurm-up slurm-down bench grid-local clean

install:  ## build .venv/ (CPU torch, stock AudioCraft 1.3.0 editable, ffmpeg, this package)
	bash scripts/install.sh

codec: install  ## retrain the shipped EnCodec (assets/encodec_synth_8khz) from nothing: two XPs, ~63 min on 2 idle cores, resumes
	$(PY) -m rr_audiocraft.recipes.codec train

judge: install  ## fit and ship the judges of the default and the reproduce benchmark through the shipped codec (assets/judge_synth*, ~3 + ~8 min)
	$(PY) -m rr_audiocraft.demo --until ceiling --ship-judge --out outputs/judge_scale/demo
	$(PY) -m rr_audiocraft.demo --preset reproduce --until ceiling --ship-judge --out outputs/judge_scale/reproduce

demo: install  ## the embedded default: miniature Table 1, offline, into demo_out/ and results/demo.md (FULL=1: all nine rows; CODEC=train: retrain the codec first)
	$(if $(filter train,$(CODEC)),$(PY) -m rr_audiocraft.recipes.codec train,$(PY) -m rr_audiocraft.recipes.codec verify)
	$(PY) -m rr_audiocraft.demo $(if $(FULL),--full,) --device $(DEVICE)

reproduce: install  ## all nine Table 1 rows x 3 seeds on 200 test captions, ~1.7 h on 2 cores (102 min measured), resumable; writes reproduce_out/ and results/reproduce.md (on a GPU: scaled up, reproduce_gpu_out/ and results/reproduce-gpu.md; DEVICE=cpu keeps the 2-core run)
	$(PY) -m rr_audiocraft.recipes.codec verify
	$(PY) -m rr_audiocraft.demo --preset reproduce --device $(DEVICE)

lint: install  ## ruff: pyflakes, pycodestyle at 120 columns, bugbear (config in pyproject.toml)
	$(PY) -m ruff check .

test: install  ## the test suite (CPU; CI runs this)
	$(PY) -m pytest -q tests

slurm-up:  ## start a one-node Slurm with accounting on this machine (Debian packages, no systemd); idempotent
	bash scripts/slurm_up.sh

slurm-down:  ## stop it: cancel jobs, stop every Slurm, MariaDB and munge daemon
	bash scripts/slurm_down.sh

test-cluster: install slurm-up  ## `dora grid rr_ablation_tiny` on that Slurm, 2 ranks per XP; cancel + resume; rr.gather over Slurm tasks
	$(PY) -m pytest -q tests_cluster

test-stock: install  ## AudioCraft's own unit tests (from its sdist) against this install
	bash scripts/test_stock.sh

bench: install  ## RR vs stock step cost; writes bench/results/
	$(PY) -m rr_audiocraft.bench

grid-local: install  ## run a Dora grid without Slurm: make grid-local GRID=rr_ablation_tiny
	$(PY) -m rr_audiocraft.grid_local $(or $(GRID),rr_ablation_tiny)

clean:
	rm -rf outputs demo_out reproduce_out reproduce_gpu_out .pytest_cache
