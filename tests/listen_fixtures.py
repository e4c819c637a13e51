"""Tiny studies for the listening-test tests: a few short WAV tones per system, captions in sidecars."""
import json
import typing as tp
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


def write_system(folder: Path, captions: tp.Sequence[str], frequency: float, seconds: float = 0.5) -> Path:
    """One tone per caption (`000.wav`, ...) with an AudioCraft-style `.json` sidecar holding the caption."""
    folder.mkdir(parents=True, exist_ok=True)
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    for index, caption in enumerate(captions):
        tone = 0.3 * np.sin(2 * np.pi * frequency * (1 + 0.1 * index) * time).astype(np.float32)
        sf.write(folder / f'{index:03d}.wav', tone, SAMPLE_RATE)
        (folder / f'{index:03d}.json').write_text(json.dumps({'description': caption}))
    return folder


def write_systems(root: Path, captions: tp.Sequence[str], names: tp.Sequence[str] = ('baseline', 'rr'),
                  seconds: float = 0.5) -> tp.Dict[str, Path]:
    return {name: write_system(root / f'clips_{name}', captions, 220.0 * (i + 1), seconds)
            for i, name in enumerate(names)}


def token_systems(study_dir: Path) -> tp.Dict[str, tp.Tuple[str, str]]:
    """Clip token -> (system, prompt id), read from study.json: what the page must never reveal."""
    study = json.loads((study_dir / 'study.json').read_text())
    return {token: (system, prompt) for system, clips in study['clips'].items() for prompt, token in clips.items()}
