"""rr-audiocraft: representation similarity regularisation (arXiv 2309.08773) for AudioCraft LMs."""
import getpass
import os
from pathlib import Path

__version__ = '0.1.0'

REPO_ROOT = Path(__file__).resolve().parents[1]

# Stock AudioCraft reads these when its train module is imported and when it resolves `//sig/SIG`:
# XPs live in the checkout unless AUDIOCRAFT_DORA_DIR says otherwise, and no login name is required.
# Set here, before any AudioCraft import of ours, so every entry point agrees on them.
os.environ.setdefault('AUDIOCRAFT_DORA_DIR', str(REPO_ROOT / 'outputs'))
os.environ.setdefault('AUDIOCRAFT_TEAM', 'default')
if not os.environ.get('USER'):
    try:
        os.environ['USER'] = getpass.getuser()
    except (KeyError, OSError):
        os.environ['USER'] = 'rr'
