"""Generate sounds (or music) from captions on the command line: `python -m rr_audiocraft.generate`.

    python -m rr_audiocraft.generate MODEL "a dog barks" "rain on a tin roof" --duration 4 --out generations

MODEL is anything `RRAudioGen/RRMusicGen.get_pretrained` loads: `//sig/SIG` (a Dora XP), a folder from
`python -m rr_audiocraft.export`, an XP folder or checkpoint file, `debug`, or a Hugging Face id. One
wav per caption is written to the output folder (plus a PNG spectrogram each with --spectrograms, and
`generations.json` with the settings), so a run can be repeated exactly with the same --seed.
"""
from . import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import json
import math
import random
import re
import sys
import typing as tp
from pathlib import Path

import numpy as np
import torch

from .models.audiogen import RRAudioGen
from .models.genmodel import RRGenModelMixin
from .models.loaders import DEBUG_NAME, ModelNotFoundError, default_device, load_models, model_family
from .models.musicgen import RRMusicGen

FAMILIES = {'audiogen': RRAudioGen, 'musicgen': RRMusicGen}
DEFAULT_DURATION = 5.0  # seconds, as stock AudioGen; capped to the model's max_duration when shorter


def load_model(name: str, family: str = 'auto', device: tp.Optional[str] = None) -> RRGenModelMixin:
    """Load a model as RRAudioGen or RRMusicGen.

    Args:
        name (str): See `RRAudioGen.get_pretrained`.
        family (str): 'audiogen', 'musicgen', or 'auto': the family of the solver that trained it
            (`cfg.solver`), else of the name ('musicgen' in it, or a MusicGen alias), else AudioGen
            (also for `debug`).
        device (str, optional): Defaults to CUDA when available, else CPU.
    """
    if family not in ('auto', *FAMILIES):
        raise ValueError(f"family={family!r} is not one of {['auto', *FAMILIES]}")
    if name == DEBUG_NAME:
        return FAMILIES['musicgen' if family == 'musicgen' else 'audiogen'].get_pretrained(name, device)
    aliases = RRMusicGen.ALIASES if family in ('auto', 'musicgen') else None
    compression_model, lm = load_models(name, default_device(device), aliases)
    if family == 'auto':
        family = model_family(lm) or ('musicgen' if 'musicgen' in name.lower() or name in RRMusicGen.ALIASES
                                      else 'audiogen')
    return FAMILIES[family].from_models(name, compression_model, lm)


def read_prompt(path: Path, max_seconds: tp.Optional[float] = None) -> tp.Tuple[torch.Tensor, int]:
    """Read an audio file to continue.

    Args:
        path (Path): Any format AudioCraft's `audio_read` reads (wav, flac, mp3, ogg, ...).
        max_seconds (float, optional): Keep only the first `max_seconds`.
    Returns:
        tuple: waveform [C, T] (float) and its sample rate.
    Raises:
        ValueError: the file is missing, unreadable, or holds no audio.
    """
    from audiocraft.data.audio import audio_read
    if not path.is_file():
        raise ValueError(f"cannot read prompt audio {path}: no such file")
    try:
        wav, sample_rate = audio_read(path)
    except Exception as exc:  # soundfile, PyAV and ffmpeg each raise their own types on a bad file
        first_line = (str(exc).strip().splitlines() or [''])[0]
        raise ValueError(f"cannot read prompt audio {path}: {type(exc).__name__}: {first_line}") from None
    if max_seconds is not None:
        wav = wav[..., :int(round(max_seconds * sample_rate))]
    if wav.shape[-1] == 0:
        raise ValueError(f"prompt audio {path} holds no samples")
    return wav.float(), int(sample_rate)


def file_stem(index: int, caption: tp.Optional[str]) -> str:
    """`03_a_dog_barks`: the caption's index, then a file-name-safe cut of it."""
    slug = re.sub(r'[^a-z0-9]+', '_', (caption or 'unconditional').lower()).strip('_')[:48] or 'caption'
    return f'{index:02d}_{slug}'


def save_spectrogram(wav: torch.Tensor, sample_rate: int, path: Path, title: str = '') -> Path:
    """Write a log-magnitude spectrogram of `wav` [C, T] (channels averaged) as a PNG."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    mono = wav.float().mean(dim=0)
    n_fft = 512 if sample_rate <= 16000 else 1024
    spec = torch.stft(mono, n_fft=n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-5))
    fig, ax = plt.subplots(figsize=(8, 3))
    image = ax.imshow(db.numpy(), origin='lower', aspect='auto', cmap='magma', vmin=float(db.max()) - 80,
                      extent=(0, mono.shape[-1] / sample_rate, 0, sample_rate / 2000))
    ax.set_xlabel('time (s)')
    ax.set_ylabel('frequency (kHz)')
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label='dB')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class ProgressBar:
    """A tqdm bar fed by the stock generation progress callback (steps of the token sequence)."""
    def __init__(self, disable: bool = False):
        from tqdm import tqdm
        self.bar = tqdm(total=0, unit='step', desc='generating', disable=disable, file=sys.stderr)

    def __call__(self, generated: int, to_generate: int) -> None:
        # For long generations the stock callback counts across windows but gives the window's length.
        total = max(self.bar.total or 0, to_generate, generated)
        if total != self.bar.total:
            self.bar.total = total
        if generated > self.bar.n:
            self.bar.update(generated - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def generate(model: RRGenModelMixin, captions: tp.List[str], out_dir: Path,
             prompt: tp.Optional[tp.Tuple[torch.Tensor, int]] = None, seed: int = 0,
             spectrograms: bool = False, progress: bool = True) -> tp.List[Path]:
    """Generate one wav per caption into `out_dir` with the model's current generation parameters.

    Args:
        model: A loaded RRAudioGen / RRMusicGen (`set_generation_params` already called).
        captions (list of str): One sample each; '' for no text condition.
        out_dir (Path): Created if needed.
        prompt (tuple, optional): (waveform [C, T], sample rate) that every sample continues.
        seed (int): Seeds torch, numpy and random right before sampling.
        spectrograms (bool): Also write `<stem>.png` next to each wav.
        progress (bool): Show a progress bar on stderr.
    Returns:
        list of Path: the wav files, in caption order.
    """
    from audiocraft.data.audio import audio_write
    descriptions: tp.List[tp.Optional[str]] = [c if c.strip() else None for c in captions]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    bar = ProgressBar(disable=not progress)
    model.set_custom_progress_callback(bar)  # type: ignore
    try:
        if prompt is None:
            wavs = model.generate(descriptions, progress=True)
        else:
            wav, sample_rate = prompt
            batch = wav[None].repeat(len(descriptions), 1, 1)
            wavs = model.generate_continuation(batch, sample_rate, descriptions, progress=True)
    finally:
        bar.close()
        model.set_custom_progress_callback(None)  # type: ignore
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (caption, wav) in enumerate(zip(captions, wavs, strict=True)):
        stem = out_dir / file_stem(index, caption)
        paths.append(audio_write(stem, wav.cpu(), model.sample_rate, strategy='loudness',
                                 loudness_compressor=True))
        if spectrograms:
            save_spectrogram(wav.cpu(), model.sample_rate, stem.with_suffix('.png'), title=caption or '(no caption)')
    return paths


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m rr_audiocraft.generate',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate audio from text captions with an AudioGen/MusicGen model (RR-trained or stock).\n"
                    "One wav per caption is written to --out, named after its index and caption.",
        epilog="examples:\n"
               "  # a model trained here (Dora signature), two captions, 4 s each\n"
               "  python -m rr_audiocraft.generate //sig/1a2b3c4d \"a dog barks\" \"rain on a roof\" --duration 4\n"
               "  # an exported folder, continuing a recording (any sample rate: it is resampled)\n"
               "  python -m rr_audiocraft.generate exports/my_model \"a bell rings\" --prompt start.wav "
               "--prompt-duration 1\n"
               "  # AudioCraft's tiny random model, to check the pipeline offline\n"
               "  python -m rr_audiocraft.generate debug \"anything\" --duration 1 --spectrograms\n")
    parser.add_argument('model', metavar='MODEL',
                        help="what to load: //sig/SIG (a Dora XP in $AUDIOCRAFT_DORA_DIR/xps; its best state, EMA "
                             "weights when trained with EMA), a folder from `python -m rr_audiocraft.export`, an XP "
                             "folder or checkpoint file, 'debug' (AudioCraft's tiny random model), or a Hugging Face "
                             "id such as facebook/audiogen-medium")
    parser.add_argument('captions', metavar='CAPTION', nargs='*',
                        help="text describing each sample to generate (quote it); \"\" generates without text")
    group = parser.add_argument_group('sampling')
    group.add_argument('--duration', type=float, default=None, metavar='SECONDS',
                       help=f"length of each sample, prompt included (default: {DEFAULT_DURATION:g}, or the model's "
                            "training segment if shorter; longer durations are generated window by window)")
    group.add_argument('--cfg-coef', type=float, default=3.0, metavar='GAMMA',
                       help="classifier-free guidance strength: 1 = plain conditional sampling, higher follows "
                            "the caption more closely (default: 3, as AudioGen/MusicGen)")
    group.add_argument('--top-k', type=int, default=250, metavar='K',
                       help="sample among the K most likely tokens; 0 turns it off (default: 250, as the paper)")
    group.add_argument('--top-p', type=float, default=0.0, metavar='P',
                       help="sample in the smallest set of tokens with total probability P, instead of top-k; "
                            "0 turns it off (default: 0)")
    group.add_argument('--temperature', type=float, default=1.0, metavar='T',
                       help="softmax temperature: below 1 is more conservative, above 1 more varied (default: 1)")
    group.add_argument('--seed', type=int, default=0, help="random seed: the same seed and settings give the same "
                                                           "audio (default: 0)")
    group = parser.add_argument_group('continuation')
    group.add_argument('--prompt', type=Path, default=None, metavar='AUDIO',
                       help="an audio file every sample continues (wav, flac, mp3, ...; resampled and down-mixed "
                            "to the model's format); the written audio starts with it, re-synthesised from its tokens")
    group.add_argument('--prompt-duration', type=float, default=None, metavar='SECONDS',
                       help="use only the first SECONDS of --prompt (default: all of it; it must be shorter "
                            "than --duration)")
    group = parser.add_argument_group('output')
    group.add_argument('--out', type=Path, default=Path('generations'), metavar='DIR',
                       help="folder for the wavs (created; default: ./generations)")
    group.add_argument('--spectrograms', action='store_true', help="also write a PNG spectrogram next to each wav")
    group.add_argument('--quiet', action='store_true', help="no progress bar")
    group = parser.add_argument_group('model')
    group.add_argument('--family', choices=['auto', *FAMILIES], default='auto',
                       help="load as AudioGen or MusicGen (default: auto, from the solver that trained the model; "
                            "'debug' is AudioGen unless --family musicgen)")
    group.add_argument('--device', default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors that need no model, before the (slow) model load; each exits with one clear message."""
    if not args.captions:
        parser.error("no caption given: pass at least one, e.g. "
                     "`python -m rr_audiocraft.generate MODEL \"a dog barks\"` (\"\" for no text)")
    for name, value in (('--duration', args.duration), ('--prompt-duration', args.prompt_duration)):
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"{name} must be > 0 seconds, got {value:g}")
    if args.temperature <= 0 or not math.isfinite(args.temperature):
        parser.error(f"--temperature must be > 0, got {args.temperature:g}")
    if args.top_k < 0:
        parser.error(f"--top-k must be >= 0, got {args.top_k}")
    if not 0 <= args.top_p <= 1:
        parser.error(f"--top-p must be in [0, 1], got {args.top_p:g}")
    if args.prompt_duration is not None and args.prompt is None:
        parser.error("--prompt-duration needs --prompt")


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    try:
        prompt = read_prompt(args.prompt, args.prompt_duration) if args.prompt is not None else None
    except ValueError as exc:
        return fail(str(exc))
    if prompt is not None and args.duration is not None and prompt[0].shape[-1] / prompt[1] >= args.duration:
        # Known before loading the model (the model repeats this check with its max_duration).
        return fail(f"prompt lasts {prompt[0].shape[-1] / prompt[1]:.2f} s but must be shorter than the generation "
                    f"duration ({args.duration:g} s): lower --prompt-duration or raise --duration")
    try:
        model = load_model(args.model, args.family, args.device)
    except (ModelNotFoundError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    duration = args.duration if args.duration is not None else min(DEFAULT_DURATION, model.max_duration)
    try:
        model.set_generation_params(use_sampling=True, top_k=args.top_k, top_p=args.top_p,
                                    temperature=args.temperature, duration=duration, cfg_coef=args.cfg_coef)
        paths = generate(model, args.captions, args.out, prompt=prompt, seed=args.seed,
                         spectrograms=args.spectrograms, progress=not args.quiet)
    except ValueError as exc:
        return fail(str(exc))
    settings = {
        'model': args.model, 'family': type(model).__name__, 'sample_rate': model.sample_rate,
        'duration': duration, 'cfg_coef': args.cfg_coef, 'top_k': args.top_k, 'top_p': args.top_p,
        'temperature': args.temperature, 'seed': args.seed,
        'prompt': str(args.prompt) if args.prompt else None, 'prompt_duration': args.prompt_duration,
        'samples': [{'caption': c, 'wav': p.name} for c, p in zip(args.captions, paths, strict=True)],
    }
    (args.out / 'generations.json').write_text(json.dumps(settings, indent=2) + '\n')
    for path in paths:
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
