"""`make test-stock` (scripts/test_stock.sh): AudioCraft's own tests, with its one environment-limited test left out."""
import subprocess

from conftest import REPO_ROOT


def test_the_stock_suite_guard_deselects_the_torchaudio_load_test_whatever_the_rootdir():
    # This checkout's pyproject.toml (or the one of the checkout the shared .venv lives in) is a config file
    # pytest may take as rootdir: the deselected id must not depend on it. Collecting one file is enough.
    proc = subprocess.run(['bash', 'scripts/test_stock.sh', 'tests/data/test_audio.py', '--collect-only'],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if '::' in line]
    assert any('::TestAvRead::' in line for line in collected)  # the file was collected
    assert not any('test_audio_write_wav' in line for line in collected), collected
    assert '1 deselected' in proc.stdout
    assert all(line.startswith('tests/data/test_audio.py::') for line in collected)  # only that file
