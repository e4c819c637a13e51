"""Data for rr-audiocraft: the embedded offline benchmark (`rr_audiocraft.data.synth`).

The synth module is imported lazily so that ``python -m rr_audiocraft.data.synth`` runs it
without the package having imported it first.
"""
import typing as tp

_SYNTH_EXPORTS = ('ClipSpec', 'Event', 'SOURCES', 'HELD_OUT_PAIRS', 'generate_dataset',
                  'synthesize_clip', 'sample_spec', 'describe', 'load_clips')

__all__ = list(_SYNTH_EXPORTS)


def __getattr__(name: str) -> tp.Any:
    if name in _SYNTH_EXPORTS:
        from . import synth
        return getattr(synth, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
