"""Export a trained RR XP to the folder layout stock AudioCraft loads: `python -m rr_audiocraft.export`.

    python -m rr_audiocraft.export //sig/SIG OUT_DIR

OUT_DIR gets the two files of `audiocraft.utils.export` (what `facebook/audiogen-medium` ships):
- `state_dict.bin`: {'best_state': LM weights, 'xp.cfg': XP config as YAML, 'version', 'exported': True};
- `compression_state_dict.bin`: the same for the compression model the LM was trained on, or
  {'pretrained': NAME} when that was `//pretrained/NAME`.
RR adds no parameter, so stock `AudioGen.get_pretrained(OUT_DIR)` (resp. MusicGen) rebuilds the model,
as long as its conditioners are stock ones (T5, LUT, ...). A model trained with our local `hf` text
encoder is exported the same way and loads with `rr_audiocraft.models.RRAudioGen/RRMusicGen`.

The stock `export_lm` / `export_encodec` are not called: they `torch.load` with the default
`weights_only`, which `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` turns off, and the LM's best state must be
chosen by the same rule as the loaders (`models.loaders.lm_state_from_package`). The packages written
are the ones those functions write, key for key.
"""
from . import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import sys
import typing as tp
from pathlib import Path

import torch
from omegaconf import OmegaConf

import audiocraft
from audiocraft.utils.export import export_pretrained_compression_model

from .checkpoint import load_checkpoint
from .models.builders import RR_CONDITIONERS
from .models.loaders import (EXPORTED_COMPRESSION_FILE, EXPORTED_LM_FILE, lm_state_from_package,
                             resolve_checkpoint, xp_config_from_package)


def exported_package(package: dict, source: tp.Any) -> dict:
    """The `audiocraft.utils.export` package of a loaded XP checkpoint (LM or compression model)."""
    cfg = xp_config_from_package(package, source)
    return {
        'best_state': lm_state_from_package(package, source),
        'xp.cfg': OmegaConf.to_yaml(cfg),
        'version': audiocraft.__version__,
        'exported': True,
    }


def export_model(sig_or_path: str, out_dir: tp.Union[str, Path], overwrite: bool = False) -> Path:
    """Write `state_dict.bin` and `compression_state_dict.bin` of a trained LM XP into `out_dir`.

    Args:
        sig_or_path (str): `//sig/SIG`, an XP folder, or its `checkpoint.th`.
        out_dir (str or Path): Folder to write (created).
        overwrite (bool): Replace an existing export in `out_dir`.
    Returns:
        Path: `out_dir`.
    """
    # An exported folder or a hub name carries no XP checkpoint: nothing left to export.
    checkpoint_path = resolve_checkpoint(sig_or_path, kinds=('xp', 'file')).checkpoint
    out_dir = Path(out_dir)
    targets = [out_dir / EXPORTED_LM_FILE, out_dir / EXPORTED_COMPRESSION_FILE]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s): pass --force to overwrite")
    package = load_checkpoint(checkpoint_path)
    cfg = xp_config_from_package(package, checkpoint_path)
    if 'transformer_lm' not in cfg or not cfg.get('compression_model_checkpoint'):
        raise ValueError(f"{checkpoint_path} is not an LM XP (solver={cfg.get('solver')!r}): export the "
                         "AudioGen/MusicGen XP; its compression model is exported with it")
    lm_package = exported_package(package, checkpoint_path)
    del package
    compression = resolve_checkpoint(cfg.compression_model_checkpoint, kinds=('pretrained', 'xp', 'file'))
    out_dir.mkdir(parents=True, exist_ok=True)
    if compression.kind == 'pretrained':  # //pretrained/NAME: a reference, as stock exports it
        export_pretrained_compression_model(str(compression.pretrained), targets[1])
    else:
        compression_package = load_checkpoint(compression.checkpoint)
        if not compression_package.get('exported'):
            compression_package = exported_package(compression_package, compression.checkpoint)
        torch.save(compression_package, targets[1])
    torch.save(lm_package, targets[0])
    return out_dir


def describe_export(out_dir: Path) -> str:
    """How to load an export, and whether stock AudioCraft can."""
    cfg = OmegaConf.create(load_checkpoint(out_dir / EXPORTED_LM_FILE)['xp.cfg'])
    family = 'MusicGen' if 'musicgen' in str(cfg.get('solver', '')) else 'AudioGen'
    ours = sorted(name for name, c in (cfg.get('conditioners') or {}).items() if c.get('model') in RR_CONDITIONERS)
    lines = [f"Exported to {out_dir}",
             f"  RR:    rr_audiocraft.models.RR{family}.get_pretrained({str(out_dir)!r})",
             f"  CLI:   python -m rr_audiocraft.generate {out_dir} \"a caption\""]
    if ours:
        lines.append(f"  stock AudioCraft cannot rebuild it: conditioner(s) {', '.join(ours)} use rr_audiocraft's "
                     f"local text encoder")
    elif family == 'MusicGen' and float(cfg.dataset.segment_duration) <= 18:
        lines.append(f"  stock MusicGen cannot build it: its default extend_stride (18 s) must be below the "
                     f"training segment ({cfg.dataset.segment_duration} s); RRMusicGen adapts it")
    else:
        lines.append(f"  stock: audiocraft.models.{family}.get_pretrained({str(out_dir)!r})")
    return '\n'.join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m rr_audiocraft.export',
        description="Export a trained AudioGen/MusicGen XP (RR or stock) to a folder that "
                    "`audiocraft.models.AudioGen.get_pretrained(OUT_DIR)` (resp. MusicGen) and "
                    "`rr_audiocraft.models.RRAudioGen.get_pretrained(OUT_DIR)` load. The LM's best state is "
                    "exported (EMA weights when the XP trained with EMA), with the compression model it was "
                    "trained on.",
        epilog="example: python -m rr_audiocraft.export //sig/1a2b3c4d exports/my_model")
    parser.add_argument('xp', help="the LM XP: //sig/SIG (in $AUDIOCRAFT_DORA_DIR/xps), an XP folder, or a "
                                   "checkpoint.th file")
    parser.add_argument('out_dir', type=Path, help="folder to write state_dict.bin and "
                                                   "compression_state_dict.bin into (created)")
    parser.add_argument('--force', action='store_true', help="overwrite an existing export in OUT_DIR")
    return parser


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        out_dir = export_model(args.xp, args.out_dir, overwrite=args.force)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe_export(out_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
