#!/usr/bin/env bash
# Builds .venv/ from nothing: CPU torch, stock AudioCraft 1.3.0 (editable, with its config/ tree),
# its real runtime needs, ffmpeg and chromium (Debian), and rr-audiocraft itself. Idempotent: a finished install is
# recorded in .venv/.rr-installed (keyed on the hash of this file, requirements.txt and pyproject.toml) and a rerun returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP="$VENV/.rr-installed"
KEY=$(cat scripts/install.sh scripts/requirements.txt pyproject.toml | sha1sum | cut -d' ' -f1)

# Debian packages, installed when missing: ffmpeg (AudioCraft's audio_write pipes through the ffmpeg binary,
# even for wav); chromium + chromium-driver (the listening test's page is tested in a real headless browser).
APT_PACKAGES=()
command -v ffmpeg >/dev/null || APT_PACKAGES+=(ffmpeg)
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || APT_PACKAGES+=(chromium chromium-driver)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "[install] ${APT_PACKAGES[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  echo "[install] .venv is up to date"; exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# Every pip call below is constrained to the CPU torch wheel on disk: a dependency asking for any
# other torch would otherwise pull gigabytes of CUDA wheels.
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
echo "[install] torch (CPU wheel)"
$PIP install torch==2.13.0

# AudioCraft 1.3.0 is an sdist whose metadata pins torch 2.1: install it --no-deps, editable, from
# the extracted sdist so that its config/ tree (not part of the wheel) sits beside the package.
AC_SRC="$VENV/src/audiocraft-1.3.0"
if [ ! -f "$AC_SRC/setup.py" ]; then
  echo "[install] audiocraft 1.3.0 sdist"
  mkdir -p "$VENV/src"
  tmp=$(mktemp -d)
  $PIP download --no-deps --no-binary :all: audiocraft==1.3.0 -d "$tmp"
  tar -xzf "$tmp"/audiocraft-1.3.0.tar.gz -C "$VENV/src"
  rm -rf "$tmp"
fi

echo "[install] runtime dependencies"
$PIP install -r scripts/requirements.txt
$PIP install --no-deps --no-build-isolation -e "$AC_SRC"

# torchaudio's compiled extensions link libc10_cuda.so, which the CPU torch does not have; without
# them the pure-Python transforms AudioCraft uses (MelSpectrogram, Resample, ...) work.
TA=$("$VENV/bin/python" -c "import importlib.util as u; print(u.find_spec('torchaudio').submodule_search_locations[0])")
rm -f "$TA"/lib/*.so "$TA"/_torchaudio*.so 2>/dev/null || true

echo "[install] rr-audiocraft (editable)"
$PIP install --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
import rr_audiocraft.configured  # first: the set-up drops xformers' "reinstall" advice, which cannot apply on a CPU-only machine
import torch, audiocraft, torchaudio, xformers, spacy, transformers, dora, flashy, flask, selenium
assert not torch.version.cuda, "a CUDA torch was installed"
import audiocraft.solvers, audiocraft.models  # noqa
print(f"[install] ok: torch {torch.__version__}, audiocraft {audiocraft.__version__}")
PY
echo "$KEY" > "$STAMP"
