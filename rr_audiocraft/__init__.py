"""rr-audiocraft: representation similarity regularisation (arXiv 2309.08773) for AudioCraft LMs.

Importing the package changes nothing in the process: entry points call `rr_audiocraft.environment.configure()`.
"""
from pathlib import Path

__version__ = '0.1.0'

REPO_ROOT = Path(__file__).resolve().parents[1]
