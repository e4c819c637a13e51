#!/usr/bin/env bash
# AudioCraft's own unit tests (shipped in its sdist) against this install: a guard on the install recipe.
#   bash scripts/test_stock.sh                          # the whole stock suite (`make test-stock`)
#   bash scripts/test_stock.sh tests/data/test_audio.py # arguments replace the default `tests` folder
# Deselected, with the reason (an environment limit, not a recipe bug):
#   test_audio_write_wav reads back with torchaudio.load, which routes to torchcodec (no CPU build for torch 2.13).
# --rootdir pins the folder node ids are relative to: without it pytest takes the first pyproject.toml with a
# [tool.pytest.ini_options] above AudioCraft's folder (this project's, or that of the checkout the .venv
# physically lives in) as rootdir, the id becomes .venv/src/audiocraft-1.3.0/tests/..., and --deselect
# silently matches nothing.
set -euo pipefail
cd "$(dirname "$0")/../.venv/src/audiocraft-1.3.0"
exec ../../bin/python -m pytest -q -p no:cacheprovider --rootdir "$(pwd -P)" \
  --deselect tests/data/test_audio.py::TestAudioWrite::test_audio_write_wav "${@:-tests}"
