"""Session fixtures shared by the test files: one synthetic dataset, one Dora folder, one tiny EnCodec.

The session's XP folder is set here, before any test imports `rr_audiocraft.train` (whose Dora main reads
it): every `dora run` of the session, in process or in a child process, lands in that folder.
"""
import os
import subprocess
import sys
import tempfile
import typing as tp
from pathlib import Path

import pytest


# RR_TEST_DIR keeps the session's data and XPs between runs (Dora resumes finished XPs at no cost).
SESSION_DIR = Path(os.environ.get('RR_TEST_DIR') or tempfile.mkdtemp(prefix='rr_tests_'))
os.environ.setdefault('PYTHONWARNINGS', 'ignore')

from rr_audiocraft.data.synth import datasource_overrides  # noqa: E402,F401 (used by test files)
from rr_audiocraft.environment import configure, dora_dir  # noqa: E402

configure(dora_dir=SESSION_DIR / 'dora')

REPO_ROOT = Path(__file__).resolve().parents[1]
DORA = [sys.executable, '-m', 'dora', '-P', 'rr_audiocraft']


def run_dora(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run `dora -P rr_audiocraft ARGS...` from the repo root, output captured."""
    proc = subprocess.run(DORA + list(args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"dora {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_cli(main: tp.Callable, argv: tp.List[str], capsys) -> tp.Tuple[int, str, str]:
    """Run a CLI `main(argv)` in process; argparse errors exit, ours return: both give the exit code."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def xp_dir(sig: str) -> Path:
    return dora_dir() / 'xps' / sig


def run_xp(*overrides: str, timeout: float = 600) -> str:
    """`dora run` an XP (overrides as on the command line) and return its signature."""
    from rr_audiocraft.train import main
    sig = main.get_xp(list(overrides)).sig
    run_dora('run', *overrides, timeout=timeout)
    assert (xp_dir(sig) / 'checkpoint.th').exists(), f"XP {sig} left no checkpoint"
    return sig


@pytest.fixture(scope='session')
def tiny_data() -> Path:
    """120 synthetic captioned clips (4 s, 16 kHz) with train/valid/test manifests."""
    from rr_audiocraft.data.synth import generate_dataset
    out = SESSION_DIR / 'synth'
    if not (out / 'egs' / 'test' / 'data.jsonl').exists():
        generate_dataset(out, num_clips=120, seed=0)
    return out


@pytest.fixture(scope='session')
def tiny_compression_sig(tiny_data) -> str:
    """Signature of a tiny EnCodec trained by the stock compression solver (2 short epochs)."""
    return run_xp('solver=rr_compression/tiny', *datasource_overrides(tiny_data))


# Short LM XPs for the model loading / export / generation tests: one short epoch, a single valid batch, and
# half-second generate-stage samples (turning both sample kinds off trips the stock stage: `rtf` unset).
# One torch thread: with the 2 cores busy, a tiny XP ran in 25-33 s with 1 thread and 71-92 s with 2
# (`num_threads` is outside the XP signature).
SHORT_LM_RUN = ['optim.epochs=1', 'dataset.valid.num_samples=8', 'dataset.evaluate.num_samples=2',
                'generate.lm.gen_duration=0.5', 'num_threads=1']


@pytest.fixture(scope='session')
def tiny_lut_audiogen_sig(tiny_data, tiny_compression_sig) -> str:
    """A tiny RR AudioGen XP with the stock LUT text conditioner, so stock AudioCraft can load its export.

    Trained with EMA (decay 0.99, updated every step): its best state holds the EMA weights, its `model`
    state the raw ones.
    """
    return run_xp('solver=rr_audiogen/tiny', 'conditioner=rr_lut',
                  f'compression_model_checkpoint=//sig/{tiny_compression_sig}', *SHORT_LM_RUN,
                  'optim.updates_per_epoch=4', 'optim.ema.use=true', 'optim.ema.updates=1',
                  *datasource_overrides(tiny_data))


@pytest.fixture(scope='session')
def tiny_hf_musicgen_sig(tiny_data, tiny_compression_sig) -> str:
    """A tiny RR MusicGen XP with its default local HF text encoder (all-MiniLM-L6-v2), no EMA."""
    return run_xp('solver=rr_musicgen/tiny', f'compression_model_checkpoint=//sig/{tiny_compression_sig}',
                  *SHORT_LM_RUN, 'optim.updates_per_epoch=2', *datasource_overrides(tiny_data))


@pytest.fixture(scope='session')
def lut_export(tmp_path_factory, tiny_lut_audiogen_sig) -> Path:
    """The LUT AudioGen XP exported by the real entry point `python -m rr_audiocraft.export //sig/SIG OUT`: the
    stock folder layout, which the fine-tuning tests also use as a released model folder. Read-only for tests."""
    out = tmp_path_factory.mktemp('export') / 'lut_audiogen'
    proc = subprocess.run([sys.executable, '-m', 'rr_audiocraft.export', f'//sig/{tiny_lut_audiogen_sig}', str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"stock: audiocraft.models.AudioGen.get_pretrained('{out}')" in proc.stdout
    return out


@pytest.fixture(scope='module')
def one_torch_thread():
    """In-process tiny models on one torch thread, restored afterwards: on a shared 2-core machine thread
    hand-offs cost more than the matrix products (a tiny generation took ~10x longer with 2 threads)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
